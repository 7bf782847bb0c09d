r"""Norms, recognised by what they compute on a probe.

A candidate is a module with a 1-D ``weight`` (and optionally a 1-D ``bias``), an epsilon attribute and
nothing else. A copy with random weight and bias is run on a random probe and compared with

.. math:: y = \frac{x - \mu_c}{\sqrt{\operatorname{mean}((x - \mu_c)^2) + \epsilon}} \cdot (o + w) + b,
   \qquad \mu_c = \begin{cases} \operatorname{mean}(x) & \text{LayerNorm} \\ 0 & \text{RMSNorm}\end{cases},
   \quad o \in \{0, 1\}

(``o = 1`` is Gemma's ``1 + weight``). The matching variant becomes the spiking LayerNorm or RMSNorm of
:mod:`mbe.ops`; a module that matches none is not a norm mbe knows and is left to the other handlers.
"""

from __future__ import annotations

import itertools
from typing import Optional

import torch
from torch import Tensor, nn

from ... import ops
from ..base import SiteModule
from ..registry import SiteSpec, random_copy, register_site

EPS_NAMES = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps")
#: tried on the probe when a norm keeps its epsilon in code, not in an attribute
EPS_CANDIDATES = (1e-5, 1e-6, 1e-12, 1e-8, 1e-3)


def _eps(module: nn.Module) -> Optional[float]:
    for name in EPS_NAMES:
        v = getattr(module, name, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _formula(x: Tensor, eps: float, centered: bool, offset: float, weight, bias) -> Tensor:
    xf = x.float()
    if centered:
        xf = xf - xf.mean(-1, keepdim=True)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * (offset + weight.float())
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def _size(module: nn.Module, params: dict) -> Optional[int]:
    if params:
        sizes = {p.numel() for p in params.values()}
        return sizes.pop() if len(sizes) == 1 and all(p.dim() == 1 for p in params.values()) else None
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, int):
        return shape
    if isinstance(shape, (tuple, list)) and len(shape) == 1 and isinstance(shape[0], int):
        return shape[0]
    return None


def _roles(names: list[str]) -> list[tuple[Optional[str], Optional[str]]]:
    """Which parameter could be the scale and which the shift (whatever they are called)."""
    if not names:
        return [(None, None)]
    if len(names) == 1:
        return [(names[0], None)]
    return [(names[0], names[1]), (names[1], names[0])]


def norm_spec(module: nn.Module) -> Optional[SiteSpec]:
    """The norm ``module`` computes (see the module docstring), or ``None``.

    Candidates hold at most two 1-D parameters of one size (the scale and the shift, whatever their
    names) and no buffers or children. The normalised dimension is the last (``[..., H]``) or, for
    channels-first norms (ConvNeXt), dim 1 (``[B, H, ...]``); both are tried on the probe, and so are the
    usual epsilons when the module keeps its own in code rather than in an attribute.
    """
    if list(module.children()) or list(module.named_buffers(recurse=False)):
        return None
    params = dict(module.named_parameters(recurse=False))
    size = _size(module, params)
    if size is None or len(params) > 2:
        return None
    eps = _eps(module)
    candidates = (eps,) if eps is not None else EPS_CANDIDATES  # a hard-coded eps (OLMo) is found on the probe
    probe, gen = random_copy(module)
    with torch.no_grad():
        probe_params = dict(probe.named_parameters(recurse=False))
        for dim, shape in ((-1, (3, 5, size)), (1, (2, size, 3, 3))):
            x = torch.randn(*shape, generator=gen)
            x = torch.cat([x * 3 + 1, x * 1e-3])  # small rows make eps visible
            try:
                y = probe(x)
            except Exception:
                continue
            if not isinstance(y, Tensor) or y.shape != x.shape:
                continue
            for (wn, bn), centered, offset, eps in itertools.product(
                _roles(list(params)), (True, False), (0.0, 1.0), candidates
            ):
                if offset and wn is None:
                    continue
                w, b = probe_params.get(wn), probe_params.get(bn)
                ref = _formula(x.movedim(dim, -1), eps, centered, offset, w, b).movedim(-1, dim)
                if float((ref - y).abs().max()) <= 1e-4 * float(y.abs().max()):
                    kind = "layer_norm" if centered else "rms_norm"
                    operator = f"spiking_{kind}" + (" (1 + weight)" if offset else "")
                    operator += " (channels first)" if dim == 1 else ""
                    details = {
                        "centered": centered,
                        "offset": offset,
                        "eps": eps,
                        "size": size,
                        "dim": dim,
                        "weight": wn,
                        "bias": bn,
                    }
                    return SiteSpec("rsqrt", operator, details)
    return None


class SpikingNorm(SiteModule):
    """A LayerNorm or RMSNorm (scale ``w`` or ``1 + w``, optional shift) with spiking operators; the
    original's parameters stay registered under their own names (so ``state_dict`` is the original's)."""

    def __init__(self, original: nn.Module, spec: SiteSpec, site, state):
        super().__init__(original, site, state)
        self.centered = spec.details["centered"]
        self.offset = spec.details["offset"]
        self.eps = spec.details["eps"]
        self.size = spec.details["size"]
        self.dim = spec.details.get("dim", -1)
        self.weight_name, self.bias_name = spec.details.get("weight"), spec.details.get("bias")

    @property
    def scale_param(self) -> Optional[Tensor]:
        """The original's scale parameter (registered on this module under its own name)."""
        return getattr(self, self.weight_name) if self.weight_name else None

    @property
    def shift_param(self) -> Optional[Tensor]:
        return getattr(self, self.bias_name) if self.bias_name else None

    def observe(self, x: Tensor) -> None:
        xf = x.float().movedim(self.dim, -1)
        self.site.observe(
            "centered" if self.centered else "input", xf - xf.mean(-1, keepdim=True) if self.centered else xf
        )

    def _scale(self) -> Optional[Tensor]:
        w = self.scale_param
        if w is None:
            return None
        return w.float() + self.offset if self.offset else w.float()

    def reference(self, x: Tensor) -> Tensor:
        xt = x.movedim(self.dim, -1)
        return _formula(xt, self.eps, self.centered, self.offset, self.scale_param, self.shift_param).movedim(
            -1, self.dim
        )

    def spiking(self, x: Tensor) -> Tensor:
        return self._spiking(x.movedim(self.dim, -1)).movedim(-1, self.dim)

    def _spiking(self, x: Tensor) -> Tensor:
        cfg, site = self.state.config, self.site
        xf = x.float()
        common = dict(
            refine=cfg.refine,
            row_scaling=cfg.row_scaling,
            budget_mb=cfg.budget_mb,
            n_basis=cfg.basis("rsqrt"),
            **self.state.op_kwargs(site),
        )
        scale = self._scale()
        bias = self.shift_param.float() if self.shift_param is not None else None
        if self.centered:
            y = ops.spiking_layer_norm(
                xf,
                self.size,
                scale,
                bias,
                self.eps,
                name="layer_norm",
                centered_range=site.range("centered", cfg.calibration_margin),
                **common,
            )
        else:
            y = ops.spiking_rms_norm(
                xf, None, self.eps, name="rms_norm", input_range=site.range("input", cfg.calibration_margin), **common
            )
            if scale is not None:
                y = y * scale
            if bias is not None:
                y = y + bias
        return y.to(x.dtype)


def build_norm(module: nn.Module, spec: SiteSpec, site, state) -> SpikingNorm:
    return SpikingNorm(module, spec, site, state)


register_site("norm", "norm", norm_spec, build_norm, builtin=True)
