"""CNN max pooling: ``max(a, b) = b + relu(a - b)`` with the ReLU neuron (:func:`mbe.ops.spiking_max_pool2d`)."""

from __future__ import annotations

from typing import Optional, Union

from torch import Tensor, nn

from ... import ops
from ..base import SiteModule
from ..registry import SiteSpec, Unsupported, register_site


def max_pool_spec(module: nn.Module) -> Optional[Union[SiteSpec, Unsupported]]:
    if not isinstance(module, nn.MaxPool2d):
        return None
    k, s, p, dil = module.kernel_size, module.stride, module.padding, module.dilation
    if (
        any(isinstance(v, tuple) and len(set(v)) > 1 for v in (k, s, p))
        or dil not in (1, (1, 1))
        or module.ceil_mode
        or module.return_indices
    ):
        return Unsupported(f"only square, undilated MaxPool2d without ceil_mode or indices is supported, got {module}")
    k, s, p = (v[0] if isinstance(v, tuple) else v for v in (k, s, p))
    return SiteSpec("relu", "spiking_max_pool2d", {"kernel_size": k, "stride": s, "padding": p})


class SpikingMaxPool2d(SiteModule):
    """``nn.MaxPool2d`` (square kernel, no dilation) with comparisons by the ReLU neuron."""

    def __init__(self, original: nn.MaxPool2d, spec: SiteSpec, site, state):
        super().__init__(original, site, state)
        self.kernel_size, self.stride, self.padding = (spec.details[k] for k in ("kernel_size", "stride", "padding"))

    def observe(self, x: Tensor) -> None:
        self.site.observe("input", x)

    def reference(self, x: Tensor) -> Tensor:
        return nn.functional.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def spiking(self, x: Tensor) -> Tensor:
        cfg = self.state.config
        return ops.spiking_max_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            n_basis=cfg.basis("relu"),
            **self.state.op_kwargs(self.site),
        )


def build_max_pool(module: nn.Module, spec: SiteSpec, site, state) -> SpikingMaxPool2d:
    return SpikingMaxPool2d(module, spec, site, state)


register_site("max-pool-2d", "pool", max_pool_spec, build_max_pool, builtin=True)
