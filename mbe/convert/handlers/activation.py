"""Activations, recognised by the function they compute.

A parameter-free leaf module is run on a probe (a 1-D ramp over [-6, 6] and the same values as a
column); if its output equals one of the registered functions (:func:`mbe.list_functions`, the
encoders' own functions excepted) to float precision, it becomes that function's fitted neuron. So
``nn.GELU``, transformers' ``GELUActivation``, ``NewGELUActivation``, ``PytorchGELUTanh``, ``SiLUActivation``,
``nn.Tanh``, ... all match by behaviour, and a function a user registers (``mbe.register_function``) is
recognised in any module that computes it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ... import ops
from ...functions import get_function, list_functions
from ..base import SiteModule
from ..registry import SiteSpec, register_site

#: registered functions that serve the operators' internals, not activations
ENCODER_FUNCTIONS = ("exp2", "reciprocal", "rsqrt", "identity")
_PROBE = torch.linspace(-6.0, 6.0, 241)


def activation_functions() -> list[str]:
    """The registered functions an activation module can be recognised as."""
    return [f for f in list_functions() if f not in ENCODER_FUNCTIONS]


def which_function(fn, probe: Tensor = _PROBE) -> Optional[str]:
    """The registered activation function that ``fn`` computes elementwise on ``probe``, or ``None``."""
    try:
        with torch.no_grad():
            y = fn(probe.clone())
            y_col = fn(probe.clone().reshape(-1, 1))
    except Exception:
        return None
    if not (isinstance(y, Tensor) and isinstance(y_col, Tensor)) or y.shape != probe.shape:
        return None
    if y_col.shape != (probe.numel(), 1) or not torch.equal(y_col.reshape(-1), y):
        return None  # not elementwise (e.g. a softmax over the last dim)
    if not bool(torch.isfinite(y).all()):
        return None
    for name in activation_functions():
        spec = get_function(name)
        lo, hi = spec.domain
        inside = (probe >= lo) & (probe <= hi)
        if int(inside.sum()) < probe.numel() // 2:
            continue
        ref = spec.fn(probe[inside].double())
        if float((ref - y[inside].double()).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max())):
            return name
    return None


def activation_spec(module: nn.Module) -> Optional[SiteSpec]:
    if list(module.children()) or list(module.parameters(recurse=False)) or list(module.buffers(recurse=False)):
        return None
    fn = which_function(module)
    if fn is None:
        return None
    return SiteSpec(fn, f"spiking_activation({fn!r})")


class SpikingActivation(SiteModule):
    """An activation module replaced by its function's fitted neuron."""

    def __init__(self, original: nn.Module, spec: SiteSpec, site, state):
        super().__init__(original, site, state)
        self.function = spec.function

    def observe(self, x: Tensor) -> None:
        self.site.observe("input", x)

    def reference(self, x: Tensor) -> Tensor:
        return get_function(self.function).fn(x)

    def spiking(self, x: Tensor) -> Tensor:
        return spiking_activation(self.state, self.site, self.function, x)

    def extra_repr(self) -> str:
        return f"{self.function!r}, " + super().extra_repr()


def spiking_activation(state, site, function: str, x: Tensor) -> Tensor:
    """``function`` at ``site`` by its neuron: explicit overrides first, else the neuron fitted for the site's
    group (:meth:`ConversionState.fitted_neuron`, with its :meth:`~ConversionState.tail_neurons` beyond its domain),
    else (``activation_domain='table'``) the shipped table. The tails are looked up (and fitted, once per machine)
    only when some input lies beyond the neuron's domain, so a conversion fits them only where inputs need them."""
    cfg = state.config
    kw = state.op_kwargs(site)
    fitted = state.activation_neurons(function, site)
    if fitted:
        kw["neurons"] = {**fitted, **(cfg.neurons or {})}
        lo, hi = kw["neurons"][function].domain
        if x.numel() and bool(((x < lo) | (x > hi)).any()):
            kw["tails"] = state.tail_neurons(function, site)
    return ops.spiking_activation(function, x, n_basis=cfg.basis(function), **kw)


def build_activation(module: nn.Module, spec: SiteSpec, site, state) -> SpikingActivation:
    return SpikingActivation(module, spec, site, state)


register_site("activation", "activation", activation_spec, build_activation, builtin=True)
