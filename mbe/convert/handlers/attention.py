r"""Attention through transformers' ``AttentionInterface``: ``softmax(Q K^T s + b + M) V`` with spiking operators.

The converted copy is switched (``set_attn_implementation``) to :func:`spiking_attention`, registered under
:data:`ATTENTION_NAME` with an eager-style additive mask builder, so every model whose attention modules
route through the interface gets spiking attention, whatever the module's class. Each calling module
becomes a site on its first call (during calibration). Handled keywords: ``scaling``, ``position_bias``
(T5's additive bias), ``softcap`` (Gemma 2: :math:`c \tanh(x / c)`, the tanh by its neuron); masks carry
causality and sliding windows. Anything else a model passes is checked, not trusted: on the calibration
batches the analog formula is compared with the model's own ``eager_attention_forward`` (or torch's SDPA)
and a mismatch keeps that site analog.

Shapes: query ``[B, H, Lq, D]``, key/value ``[B, Hkv, Lk, D]`` (grouped heads are repeated), mask
``[B, 1, Lq, Lk]`` additive or ``None``. Returns ``([B, Lq, H, D], probs)`` like the eager function.
"""

from __future__ import annotations

import sys
import weakref
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ... import ops
from ..sites import ConversionState, Site

ATTENTION_NAME = "mbe_spiking"
#: module -> (the conversion state that owns it, its name); filled by :func:`mbe.convert.convert`
OWNERS: "weakref.WeakKeyDictionary[nn.Module, tuple[ConversionState, str]]" = weakref.WeakKeyDictionary()


def repeat_kv(x: Tensor, heads: int) -> Tensor:
    """Repeat grouped key/value heads ``[B, Hkv, L, D]`` to ``heads``."""
    if x.shape[1] == heads:
        return x
    return x.repeat_interleave(heads // x.shape[1], dim=1)


def exact_attention(query, key, value, mask, scaling, position_bias=None, softcap=None) -> tuple[Tensor, Tensor]:
    """The analog reference: ``softmax(c tanh(Q K^T s / c) + b + M) V`` (float32 softmax, like eager)."""
    heads = query.shape[1]
    key, value = repeat_kv(key, heads), repeat_kv(value, heads)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if position_bias is not None:
        scores = scores + position_bias
    if mask is not None:
        scores = scores + mask[..., : key.shape[-2]]
    probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def original_attention(module: nn.Module) -> Callable:
    """The model's own eager attention function (its modeling module's ``eager_attention_forward``), or
    transformers' SDPA function when the module has none."""
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if callable(fn):
        return fn
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def attention_site(state: ConversionState, name: str, module_class: str) -> Site:
    return state.new_site(
        name, "attention", "exp2", "spiking_matmul + spiking_softmax", "attention-interface", module_class
    )


def spiking_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Optional[Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs,
):
    """``AttentionInterface`` function (see the module docstring)."""
    owner = OWNERS.get(module)
    if owner is None:
        raise RuntimeError(
            f"{type(module).__name__} runs attn_implementation={ATTENTION_NAME!r} but was not converted by "
            f"mbe.convert(); convert the model instead of setting the implementation"
        )
    state, name = owner
    site = attention_site(state, name, type(module).__name__)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    position_bias, softcap = kwargs.get("position_bias"), kwargs.get("softcap")
    state.inline_paused += 1
    try:
        if state.calibrating:
            for k_, t_ in (("query", query), ("key", key), ("value", value)):
                site.observe(k_, t_)
            ref = exact_attention(query, key, value, attention_mask, scaling, position_bias, softcap)
            out = original_attention(module)(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )
            site.check_reference(ref[0], out[0])
            return out
        if not site.spiking:
            if site.reference_error is not None and site.reference_error <= state.config.reference_tolerance:
                return exact_attention(query, key, value, attention_mask, scaling, position_bias, softcap)
            return original_attention(module)(
                module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
            )
        return spiking_core(state, site, query, key, value, attention_mask, scaling, position_bias, softcap)
    finally:
        state.inline_paused -= 1


def spiking_core(state, site, query, key, value, mask, scaling, position_bias=None, softcap=None, causal=False):
    """Spiking ``softmax(Q K^T s + b + M) V`` for one site (shapes as in the module docstring)."""
    cfg = state.config
    heads = query.shape[1]
    key, value = repeat_kv(key, heads), repeat_kv(value, heads)
    kw = dict(state.op_kwargs(site), budget_mb=cfg.budget_mb)
    m = cfg.calibration_margin
    identity_n = cfg.basis("identity")
    scores = (
        ops.spiking_matmul(
            query,
            key.transpose(-1, -2),
            ranges=(site.range("query", m), site.range("key", m)),
            n_basis=identity_n,
            name="scores",
            **kw,
        )
        * scaling
    )
    if softcap is not None:
        from .activation import spiking_activation

        scores = spiking_activation(state, site, "tanh", scores / softcap) * softcap
    if position_bias is not None:
        scores = scores + position_bias
    if mask is not None and mask.dtype != torch.bool:
        mask = mask[..., : key.shape[-2]]
    probs = ops.spiking_softmax(
        scores, mask=mask, causal=causal, refine=cfg.refine, name="softmax", n_basis=cfg.basis("exp2"), **kw
    )
    out = ops.spiking_matmul(
        probs,
        value,
        ranges=((0.0, 1.0), site.range("value", m)),
        name="context",
        n_basis=identity_n,
        silent_zeros=True,
        **kw,
    )
    return out.transpose(1, 2).contiguous(), probs


def register_attention() -> None:
    """Register :func:`spiking_attention` and an eager-style mask builder with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, spiking_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def route_attention(snn: nn.Module) -> Optional[str]:
    """Switch ``snn`` to :data:`ATTENTION_NAME`; returns why it could not (``None`` when it did)."""
    setter = getattr(snn, "set_attn_implementation", None)
    if setter is None:  # not a transformers model: attention, if any, is caught as inline softmax/SDPA calls
        return None
    can = getattr(snn, "_can_set_attn_implementation", lambda: True)
    if not can():
        return (
            f"{type(snn).__name__} computes attention inline instead of through transformers' "
            f"AttentionInterface; softmax and scaled_dot_product_attention calls are converted where they occur"
        )
    register_attention()
    setter(ATTENTION_NAME)
    return None
