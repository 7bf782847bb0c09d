r"""Gated MLPs: :math:`\mathrm{down}(\mathrm{act}(\mathrm{gate}(x)) \odot \mathrm{up}(x))`.

Recognised by structure: a module holding a gate projection, an up projection, a down projection and an
activation under one of the naming layouts in :data:`GATED_LAYOUTS` (Llama, Mistral, Qwen, Gemma, ...:
``gate_proj/up_proj/down_proj/act_fn``; T5's gated FFN: ``wi_0/wi_1/wo/act``; Mixtral-style experts:
``w1/w3/w2/act_fn``). The elementwise product becomes a spiking product; the activation is a site of its
own (matched by :mod:`.activation`). The reference check on real inputs confirms the structure means what
it seems to.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ... import ops
from ..base import SiteModule
from ..registry import SiteSpec, register_site

#: (gate, up, down, activation) attribute names
GATED_LAYOUTS = (
    ("gate_proj", "up_proj", "down_proj", "act_fn"),
    ("wi_0", "wi_1", "wo", "act"),
    ("w1", "w3", "w2", "act_fn"),
)


def gated_mlp_spec(module: nn.Module) -> Optional[SiteSpec]:
    for layout in GATED_LAYOUTS:
        parts = [getattr(module, name, None) for name in layout]
        if all(isinstance(p, nn.Module) for p in parts):
            return SiteSpec("identity", "spiking_mul (gate x up)", {"layout": layout})
    return None


class SpikingGatedMLP(SiteModule):
    """The gated MLP with its product spiking; its children are the original's, under the same names."""

    def __init__(self, original: nn.Module, spec: SiteSpec, site, state):
        super().__init__(original, site, state)
        self.layout = spec.details["layout"]
        for name, child in original.named_children():
            setattr(self, name, child)

    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        gate, up, _, act = (getattr(self, n) for n in self.layout)
        return act(gate(x)), up(x)

    def _down(self, h: Tensor) -> Tensor:
        dropout = getattr(self, "dropout", None)
        if isinstance(dropout, nn.Module):
            h = dropout(h)
        down = getattr(self, self.layout[2])
        weight = getattr(down, "weight", None)
        if isinstance(weight, Tensor) and weight.dtype != h.dtype:
            h = h.to(weight.dtype)
        return down(h)

    def observe(self, x: Tensor) -> None:
        pass  # the factors are observed where they are computed, in reference()

    def reference(self, x: Tensor) -> Tensor:
        act, up = self._parts(x)
        if self.state.calibrating:
            self.site.observe("act", act)
            self.site.observe("up", up)
        return self._down(act * up)

    def spiking(self, x: Tensor) -> Tensor:
        cfg, site = self.state.config, self.site
        act, up = self._parts(x)
        m = cfg.calibration_margin
        prod = ops.spiking_mul(
            act,
            up,
            ranges=(site.range("act", m), site.range("up", m)),
            budget_mb=cfg.budget_mb,
            n_basis=cfg.basis("identity"),
            name="gated_product",
            **self.state.op_kwargs(site),
        )
        return self._down(prod)


def build_gated_mlp(module: nn.Module, spec: SiteSpec, site, state) -> SpikingGatedMLP:
    return SpikingGatedMLP(module, spec, site, state)


register_site("gated-mlp", "gated_product", gated_mlp_spec, build_gated_mlp, builtin=True)
