"""The public fits: :func:`fit_neuron` (MBE) and :func:`fit_fs_neuron` (the Few-Spikes baseline)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import Tensor

from ..functions import FunctionSpec, get_function
from ..neuron.base import validate_counts
from ..neuron.fs import FSNeuron, FSParameters
from ..neuron.functional import SigmoidSurrogate, simulate
from ..neuron.mbe import MBENeuron, MBEParameters
from .initialisation import initial_state
from .loop import basis_outputs, descend, lstsq_readout
from .recipes import FitRecipe, get_recipe
from .state import MBEFitState
from .targets import neuron_mse, resolve_target, training_samples


@dataclass
class FitResult:
    """A fitted neuron with the numbers that describe how it was made."""

    neuron: Union[MBENeuron, FSNeuron]
    mse: float  # on ``eval_points`` evenly spread points of the domain
    train_mse: float
    seconds: float
    recipe: FitRecipe
    seed: int
    history: list = field(default_factory=list)


@torch.enable_grad()
def fit_neuron(
    target,
    domain=None,
    n_basis: Optional[int] = None,
    timesteps: int = 16,
    *,
    recipe: Union[str, FitRecipe] = "best",
    seed: int = 0,
    eval_points: int = 10_000,
    progress: bool = False,
    density=None,
    init: Optional[MBEParameters] = None,
    **overrides,
) -> FitResult:
    """Fit an MBE neuron to ``target`` on ``domain``.

    Args:
        target: a registered name (``"gelu"``...), a :class:`FunctionSpec`, or a callable (then
            ``domain`` is required).
        domain: ``(low, high)``; defaults to the registry's.
        n_basis: N; defaults to the registry's paper value (4 if the target is a callable).
        timesteps: T.
        recipe: ``"best"`` (default), ``"paper"`` or a :class:`FitRecipe`.
        seed: makes the fit deterministic.
        eval_points: evenly spread points for the reported MSE.
        progress: show a tqdm bar over epochs.
        density: a sample of the inputs the neuron will see (e.g. a site's calibration sketch); the fit then
            minimises the MSE weighted by their density (plus a uniform floor, see
            :func:`mbe.fitting.targets.training_samples`) instead of the plain MSE over the domain.
        init: parameters to start from instead of the recipe's initialisation (same N), e.g. the fit at a
            lower T: the result is never worse on the training objective than ``init`` run at ``timesteps``
            (the starting point is the first candidate kept).
        **overrides: fields of the recipe to change, e.g. ``decay=False`` for the no-decay ablation.

    Returns:
        :class:`FitResult` with the ready :class:`MBENeuron` and its MSE.
    """
    name, fn, domain = resolve_target(target, domain)
    if n_basis is None:
        n_basis = get_function(name).n_basis if isinstance(target, (str, FunctionSpec)) else 4
    validate_counts(n_basis, timesteps)
    rec = get_recipe(recipe).with_overrides(**overrides)
    t0 = time.perf_counter()
    gen, x, y = training_samples(name, fn, domain, rec, seed, density)
    xf = x.float()
    if init is None:
        state = initial_state(fn, x, y, n_basis, timesteps, domain, rec, gen)
    elif not isinstance(init, MBEParameters) or init.n_basis != n_basis:
        raise ValueError(f"fit_neuron: init must be MBEParameters with N={n_basis} bases, got {init!r:.80}")
    else:
        state = MBEFitState.from_params(init, timesteps, domain, rec)

    surrogate = SigmoidSurrogate(rec.surrogate_slope)

    def exact_loss_and_ls() -> float:
        with torch.no_grad():
            p = state.params()
            if rec.least_squares:
                feats = basis_outputs(p, xf, timesteps)
                w, b = lstsq_readout(feats, y, rec.output_bias)
                state.set_readout(w, b)
                p = state.params()
            d, r, vth = (k.float() for k in p.kernels(timesteps))
            out = simulate(xf, d, r, vth, p.weight.float(), float(p.bias), p.input_offset.float()).output
            return float(((out.double() - y) ** 2).mean())

    def surrogate_loss() -> Tensor:
        p = state.params()
        d, r, vth = (k.float() for k in p.kernels(timesteps))
        out = simulate(
            xf, d, r, vth, p.weight.float(), p.bias.float(), p.input_offset.float(), spike_fn=surrogate
        ).output
        return ((out.double() - y) ** 2).mean()

    best_loss, best_snap, history = descend(
        state.tensors(),
        surrogate_loss,
        exact_loss_and_ls,
        state.snapshot,
        rec,
        f"fit {name} N={n_basis} T={timesteps}",
        progress,
    )
    state.restore(best_snap)
    params = MBEParameters(**{k: v.detach().float() for k, v in vars(state.params()).items()})
    neuron = MBENeuron(params, timesteps, function=name, domain=domain)
    mse = neuron_mse(neuron, fn, domain, eval_points)
    return FitResult(neuron, mse, best_loss, time.perf_counter() - t0, rec, seed, history)


@torch.enable_grad()
def fit_fs_neuron(
    target,
    domain=None,
    timesteps: int = 16,
    *,
    init: str = "binary",
    recipe: Union[str, FitRecipe] = "best",
    seed: int = 0,
    shift: bool = False,
    eval_points: int = 10_000,
    **overrides,
) -> FitResult:
    """Fit the Few-Spikes baseline (3T free values) with the same loss, optimiser and budget.

    ``init``: ``"binary"`` (halving, the good one) or ``"random"``. The membrane starts at ``x``
    (no shift) unless ``shift=True``, which starts it at ``x - low`` so signed inputs can be encoded
    (what an FS identity encoder needs). Under the ``best`` recipe ``d`` (the FS readout) and an output bias are solved by
    least squares between gradient steps; under ``paper`` only gradients are used and there is no bias.
    """
    name, fn, domain = resolve_target(target, domain)
    validate_counts(1, timesteps)
    if init not in ("binary", "random"):
        raise ValueError(f"init must be 'binary' or 'random', got {init!r}")
    rec = get_recipe(recipe).with_overrides(**overrides)
    t0 = time.perf_counter()
    gen, x, y = training_samples(name, fn, domain, rec, seed)
    lo, hi = domain
    xf = x.float()
    # u[0] = x as in Stoeckl & Maass: the sign cut-off (a negative membrane never fires) is where FS
    # gets its ReLU-like shape; shifting the input into range would leave it a linear code of x.
    offset = lo if shift else 0.0
    in_range = (hi - lo) if shift else max(abs(lo), abs(hi))
    out_range = float(y.abs().max())
    make = FSParameters.binary if init == "binary" else FSParameters.random
    kw = {"generator": gen} if init == "random" else {}
    p0 = make(timesteps, in_range, out_range, input_offset=offset, **kw)
    raw = {k: getattr(p0, k).double().clone().requires_grad_(True) for k in ("d", "r", "vth")}
    bias = torch.tensor(0.0, dtype=torch.float64)
    if rec.output_bias and not rec.least_squares:
        bias.requires_grad_(True)
    if rec.least_squares:
        raw["d"].requires_grad_(False)
    surrogate = SigmoidSurrogate(rec.surrogate_slope)
    one = torch.ones(1, dtype=torch.float32)
    off = torch.tensor([offset], dtype=torch.float32)

    def exact() -> float:
        with torch.no_grad():
            if rec.least_squares:
                res = simulate(
                    xf,
                    raw["d"][None].float(),
                    raw["r"][None].float(),
                    raw["vth"][None].float(),
                    one,
                    0.0,
                    off,
                    return_spikes=True,
                )
                w, b = lstsq_readout(res.spikes[0], y, rec.output_bias)
                raw["d"].copy_(w)
                bias.copy_(b)
            out = simulate(
                xf, raw["d"][None].float(), raw["r"][None].float(), raw["vth"][None].float(), one, float(bias), off
            ).output
            return float(((out.double() - y) ** 2).mean())

    def surrogate_loss() -> Tensor:
        out = simulate(
            xf,
            raw["d"][None].float(),
            raw["r"][None].float(),
            raw["vth"][None].float(),
            one,
            bias.float(),
            off,
            spike_fn=surrogate,
        ).output
        return ((out.double() - y) ** 2).mean()

    def snapshot():
        return {k: v.detach().clone() for k, v in raw.items()}, bias.detach().clone()

    tensors = [v for v in (*raw.values(), bias) if v.requires_grad]
    best, snap, history = descend(tensors, surrogate_loss, exact, snapshot, rec, f"fit FS {name} T={timesteps}", False)
    vals, b = snap
    params = FSParameters(
        d=vals["d"].float(),
        r=vals["r"].float(),
        vth=vals["vth"].float(),
        bias=b.float(),
        input_offset=torch.tensor(float(offset)),
    )
    neuron = FSNeuron(params, function=name, domain=domain)
    mse = neuron_mse(neuron, fn, domain, eval_points)
    return FitResult(neuron, mse, best, time.perf_counter() - t0, rec, seed, history)
