r"""The learnable parametrisation of an MBE neuron during fitting: unconstrained raw values
(log time constants, levels and offsets in units of the domain width) mapped to :class:`MBEParameters`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..neuron.mbe import MBEParameters
from .recipes import FitRecipe

LN2 = math.log(2.0)


class MBEFitState:
    """Learnable raw values. Levels and offsets are in units of the domain width, taus in log space."""

    def __init__(
        self,
        n_basis: int,
        timesteps: int,
        domain,
        recipe: FitRecipe,
        *,
        offsets: Tensor,
        levels: Tensor,
        out_level: Tensor,
        weight: Tensor,
        bias: float,
        tau_jitter: Tensor,
    ):
        lo, hi = domain
        self.lo, self.width = lo, hi - lo
        self.timesteps = timesteps
        self.recipe = recipe
        n = n_basis
        rate = LN2 if recipe.decay else 0.0
        f64 = dict(dtype=torch.float64)
        # Eq. 4 rate dt/tau: dt = exp(log_dt), tau = exp(log_tau). Start with dt = 1, tau = 1/rate.
        log_tau0 = -math.log(rate) if rate > 0 else 0.0
        self.log_tau = {
            k: (torch.full((n,), log_tau0, **f64) + tau_jitter).requires_grad_(recipe.decay) for k in ("d", "r", "vth")
        }
        self.log_dt = torch.zeros(n, **f64).requires_grad_(recipe.decay)
        shared = not recipe.per_basis_levels
        lvl = levels[:1] if shared else levels
        # the paper's alpha is a fixed constant; per-basis levels are the project's learnable addition
        self.log_level_r = torch.log(lvl / self.width).clone().requires_grad_(recipe.per_basis_levels)
        self.log_level_vth = torch.log(lvl / self.width).clone().requires_grad_(recipe.per_basis_levels)
        od = out_level[:1] if shared else out_level
        self.log_level_d = torch.log(od).clone().requires_grad_(recipe.per_basis_levels and not recipe.least_squares)
        self.offset = ((offsets - lo) / self.width).clone().requires_grad_(recipe.input_shift == "per_basis")
        self.weight = weight.clone().requires_grad_(not recipe.least_squares)
        self.bias = torch.tensor(float(bias), **f64).requires_grad_(recipe.output_bias and not recipe.least_squares)
        self.n = n

    @classmethod
    def from_params(cls, params: MBEParameters, timesteps: int, domain, recipe: FitRecipe) -> "MBEFitState":
        """The raw values whose :meth:`params` are ``params`` (to float64 rounding): a warm start from a fitted
        neuron (e.g. the same function's fit at a lower T). Shared-level recipes take the first basis's levels."""
        n = params.n_basis
        f64 = dict(dtype=torch.float64)
        state = cls(
            n,
            timesteps,
            domain,
            recipe,
            offsets=params.input_offset.to(**f64),
            levels=params.alpha_r.to(**f64),
            out_level=params.alpha_d.to(**f64),
            weight=params.weight.to(**f64),
            bias=float(params.bias),
            tau_jitter=torch.zeros(n, **f64),
        )
        with torch.no_grad():
            for k in ("d", "r", "vth"):
                state.log_tau[k].copy_(getattr(params, f"tau_{k}").to(**f64).log())
            if recipe.decay:
                state.log_dt.copy_(params.dt.to(**f64).log())
            vth = params.alpha_vth.to(**f64)[: state.log_level_vth.numel()]
            state.log_level_vth.copy_(torch.log(vth / state.width))
        return state

    def tensors(self) -> list[Tensor]:
        ts = [
            *self.log_tau.values(),
            self.log_dt,
            self.log_level_r,
            self.log_level_vth,
            self.log_level_d,
            self.offset,
            self.weight,
            self.bias,
        ]
        return [t for t in ts if t.requires_grad]

    def params(self) -> MBEParameters:
        n = self.n
        rate_scale = self.log_dt.exp() if self.recipe.decay else torch.zeros(n, dtype=torch.float64)

        def expand(v: Tensor) -> Tensor:  # a shared level ([1]) broadcasts to every basis
            return v.expand(n)

        return MBEParameters(
            alpha_d=expand(self.log_level_d.exp()),
            alpha_r=expand(self.log_level_r.exp() * self.width),
            alpha_vth=expand(self.log_level_vth.exp() * self.width),
            tau_d=self.log_tau["d"].exp(),
            tau_r=self.log_tau["r"].exp(),
            tau_vth=self.log_tau["vth"].exp(),
            dt=rate_scale,
            weight=self.weight,
            input_offset=self.lo + self.offset * self.width,
            bias=self.bias,
        )

    def snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in vars(self).items() if isinstance(v, Tensor)} | {
            "log_tau": {k: v.detach().clone() for k, v in self.log_tau.items()}
        }

    def restore(self, snap: dict) -> None:
        with torch.no_grad():
            for k, v in snap.items():
                if k == "log_tau":
                    for kk, vv in v.items():
                        self.log_tau[kk].copy_(vv)
                else:
                    getattr(self, k).copy_(v)

    def set_readout(self, w: Tensor, b: Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(w)
            self.bias.copy_(b)
