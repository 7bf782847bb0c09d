"""Nonlinear torch calls written inline in a model's ``forward`` (not behind a module).

Some models call ``torch.tanh`` (RoBERTa's and BART's classification heads), ``softmax`` (attention that
does not use transformers' interface: BLOOM, GPT-Neo, MPT) or ``scaled_dot_product_attention`` (Falcon)
directly. A ``TorchFunctionMode`` watches every torch call during calibration, with the innermost
running module known from forward hooks; a call to one of :data:`INLINE_ACTIVATIONS` or to softmax/SDPA
made by a module's own code (not inside a spiking replacement) becomes a site named
``<module>:<function>`` (``#k`` for its k-th call in one forward). After calibration only the modules
that own such sites keep an (inner-call-only) interceptor, so models without inline calls run without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ... import ops
from ..base import SiteModule
from ..sites import ConversionState, Site
from .activation import spiking_activation

#: torch callables computing a registered activation -> its name (F.gelu is decided by ``approximate``)
INLINE_ACTIVATIONS = {
    torch.tanh: "tanh",
    Tensor.tanh: "tanh",
    F.tanh: "tanh",
    torch.sigmoid: "sigmoid",
    Tensor.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "silu",
    torch.relu: "relu",
    Tensor.relu: "relu",
    F.relu: "relu",
    F.gelu: "gelu",
}
SOFTMAX = (torch.softmax, Tensor.softmax, F.softmax)
SDPA = (F.scaled_dot_product_attention,)


def _activation_name(func, kwargs) -> str:
    name = INLINE_ACTIVATIONS[func]
    if name == "gelu" and kwargs.get("approximate", "none") == "tanh":
        return "gelu_tanh"
    return name


class InlineInterceptor(TorchFunctionMode):
    """Turns inline nonlinear calls of the modules on top of ``stack`` into spiking sites."""

    def __init__(self, state: ConversionState, only: nn.Module | None = None):
        super().__init__()
        self.state = state
        self.only = only  # after calibration: intercept only this module's own calls
        self.stack: list[tuple[str, nn.Module]] = []
        self.calls: dict[int, dict[str, int]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        is_act, is_softmax, is_sdpa = func in INLINE_ACTIVATIONS, func in SOFTMAX, func in SDPA
        if not (is_act or is_softmax or is_sdpa) or self.state.inline_paused or not self.stack:
            return func(*args, **kwargs)
        name, module = self.stack[-1]
        if isinstance(module, SiteModule) or (self.only is not None and module is not self.only):
            return func(*args, **kwargs)
        fn = _activation_name(func, kwargs) if is_act else ("softmax" if is_softmax else "sdpa")
        counts = self.calls.setdefault(id(module), {})
        k = counts.get(fn, 0)
        counts[fn] = k + 1
        site_name = f"{name}:{fn}" + (f"#{k}" if k else "")
        if is_act:
            return _activation(self.state, site_name, module, fn, func, args, kwargs)
        if is_softmax:
            return _softmax(self.state, site_name, module, func, args, kwargs)
        return _sdpa(self.state, site_name, module, func, args, kwargs)

    # forward hooks keep the stack of running modules
    def push(self, name: str, module: nn.Module) -> None:
        self.stack.append((name, module))
        self.calls.pop(id(module), None)

    def pop(self) -> None:
        self.stack.pop()


def _site(state: ConversionState, name: str, kind: str, function: str, operator: str, module, *, same=True) -> Site:
    site = state.new_site(name, kind, function, operator, "inline-call", type(module).__name__)
    if same and site.reference_error is None:
        site.reference_error = 0.0  # the replacement stands for the very function the model called
    return site


def _activation(state, site_name, module, fn, func, args, kwargs):
    site = _site(state, site_name, "activation", fn, f"spiking_activation({fn!r}) (inline call)", module)
    x = args[0]
    if state.calibrating:
        site.observe("input", x)
        return func(*args, **kwargs)
    if not site.spiking or kwargs.get("inplace") or len(args) > 1:
        return func(*args, **kwargs)
    return spiking_activation(state, site, fn, x)


def _softmax(state, site_name, module, func, args, kwargs):
    site = _site(state, site_name, "attention", "exp2", "spiking_softmax (inline call)", module)
    if state.calibrating or not site.spiking:
        return func(*args, **kwargs)
    x = args[0]
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    dtype = kwargs.get("dtype", args[2] if len(args) > 2 else None)
    if dim is None:
        return func(*args, **kwargs)
    xf = x.to(dtype) if dtype is not None else x
    cfg = state.config
    kw = dict(state.op_kwargs(site), budget_mb=cfg.budget_mb)
    out = ops.spiking_softmax(xf, dim=dim, refine=cfg.refine, name="softmax", n_basis=cfg.basis("exp2"), **kw)
    return out.to(xf.dtype)


def _sdpa(state, site_name, module, func, args, kwargs):
    from .attention import exact_attention, spiking_core

    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    bound = dict(zip(names, args, strict=False)) | kwargs
    q, k, v = bound["query"], bound["key"], bound["value"]
    mask, causal, scale = bound.get("attn_mask"), bool(bound.get("is_causal", False)), bound.get("scale")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    site = _site(
        state, site_name, "attention", "exp2", "spiking_matmul + spiking_softmax (inline SDPA)", module, same=False
    )
    if state.calibrating:
        for key_, t_ in (("query", q), ("key", k), ("value", v)):
            site.observe(key_, t_)
        out = func(*args, **kwargs)
        if mask is None or mask.dtype != torch.bool:
            ref_mask = mask
            if causal:
                lq, lk = q.shape[-2], k.shape[-2]
                tri = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
                ref_mask = torch.zeros(lq, lk, dtype=q.dtype).masked_fill(~tri, float("-inf"))
                ref_mask = ref_mask if mask is None else ref_mask + mask
            ref = exact_attention(q, k, v, ref_mask, scale)[0].transpose(1, 2)
        else:
            ref = exact_attention(
                q, k, v, torch.zeros_like(mask, dtype=q.dtype).masked_fill(~mask, float("-inf")), scale
            )[0].transpose(1, 2)
        site.check_reference(ref, out)
        return out
    if not site.spiking or bound.get("dropout_p", 0.0) or bound.get("enable_gqa", False):
        return func(*args, **kwargs)
    return spiking_core(state, site, q, k, v, mask, scale, causal=causal)[0].transpose(1, 2)
