"""Site handlers: what a module computes (``match``) and its spiking replacement (``build``).

A handler is a match and a build, as in torchao's config handlers and transformers' attention interface:

- ``match(module)`` looks at structure and behaviour (attributes, the function the module computes on a
  probe) and returns a :class:`SiteSpec` saying what it computes, :class:`Unsupported` with a reason
  (the module is of this kind but a variant mbe cannot convert), or ``None`` (not this kind);
- ``build(module, spec, site, state)`` returns the replacement, a :class:`mbe.convert.base.SiteModule`.

Handlers are tried in order, user handlers (:func:`register_site`) before the built-ins, and the first
match wins. A module that matches none stays analog: silently when it is known to be linear or index-like
(:func:`linear_reason`), otherwise listed in the report with the reason. Every replacement is then
checked against the module it replaced on the calibration batches (:mod:`mbe.convert.base`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch
from torch import nn

from .config import SITE_KINDS


@dataclass(frozen=True)
class SiteSpec:
    """What a matched module computes: the neuron ``function`` that characterises the site, the
    ``operator`` for the report, and handler-specific ``details``."""

    function: str
    operator: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Unsupported:
    """A module of the handler's kind in a variant mbe cannot convert; it stays analog with ``reason``."""

    reason: str


@dataclass(frozen=True)
class SiteHandler:
    """A named (match, build) pair for one site kind."""

    name: str
    kind: str
    match: Callable[[nn.Module], Union[SiteSpec, Unsupported, None]]
    build: Callable[..., nn.Module]


_USER: list[SiteHandler] = []
_BUILTIN: list[SiteHandler] = []


def register_site(
    name: str,
    kind: str,
    match: Callable[[nn.Module], Union[SiteSpec, Unsupported, None]],
    build: Callable[..., nn.Module],
    *,
    builtin: bool = False,
    overwrite: bool = False,
) -> SiteHandler:
    """Add a site handler; user handlers are tried before the built-ins, in registration order.

    Args:
        name: a unique handler name (shown in the conversion report).
        kind: one of :data:`mbe.convert.config.SITE_KINDS` (decides which ``ConversionConfig.convert``
            switch turns it on, and its role in the energy accounting).
        match: ``module -> SiteSpec | Unsupported | None``.
        build: ``(module, spec, site, state) -> SiteModule``.
        overwrite: replace a handler of the same name instead of raising.

    Example (a user's own norm, whose math is RMSNorm with a learned scale)::

        mbe.register_site("my-norm", "norm",
                          match=lambda m: mbe.convert.rms_norm_spec(m) if isinstance(m, MyNorm) else None,
                          build=mbe.convert.build_norm)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_site: name must be a non-empty string, got {name!r}")
    if kind not in SITE_KINDS:
        raise ValueError(f"register_site: kind must be one of {SITE_KINDS}, got {kind!r}")
    if not callable(match) or not callable(build):
        raise TypeError("register_site: match and build must be callables")
    handler = SiteHandler(name, kind, match, build)
    existing = [h for h in _USER + _BUILTIN if h.name == name]
    if existing and not overwrite:
        raise ValueError(f"register_site: a handler named {name!r} exists; pass overwrite=True to replace it")
    for table in (_USER, _BUILTIN):
        table[:] = [h for h in table if h.name != name]
    (_BUILTIN if builtin else _USER).append(handler)
    return handler


def unregister_site(name: str) -> None:
    """Remove the handler called ``name`` (``ValueError`` if there is none)."""
    for table in (_USER, _BUILTIN):
        for h in table:
            if h.name == name:
                table.remove(h)
                return
    raise ValueError(f"unregister_site: no handler named {name!r}; registered: {[h.name for h in handlers()]}")


def handlers() -> list[SiteHandler]:
    """Every handler in the order they are tried (user handlers first)."""
    from . import handlers as _builtins  # noqa: F401  (registers the built-ins on first use)

    return [*_USER, *_BUILTIN]


def find_handler(module: nn.Module) -> Optional[tuple[SiteHandler, Union[SiteSpec, Unsupported]]]:
    """The first handler whose ``match`` recognises ``module``, with its answer; ``None`` if none does."""
    for handler in handlers():
        answer = handler.match(module)
        if answer is not None:
            return handler, answer
    return None


# --------------------------------------------------------------------------------------------------------
# modules that stay analog by design: linear in their input, or lookups
# --------------------------------------------------------------------------------------------------------
_LINEAR_TYPES = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
)
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


def linear_reason(module: nn.Module) -> Optional[str]:
    """Why ``module`` needs no spiking operator (linear in its input, a lookup, a position encoding or
    dropout), or ``None``. Recognised by type for torch's own layers and by structure otherwise."""
    if isinstance(module, _DROPOUT_TYPES):
        return "dropout (identity at inference)"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding lookup"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batch norm (affine at inference)"
    if isinstance(module, _LINEAR_TYPES):
        return "linear layer (weights untouched; exact on decoded spike trains)"
    cls = type(module)
    # transformers' GPT-2 style Conv1D and other Linear look-alikes: a 2-D weight, a 1-D bias, nothing else
    params = dict(module.named_parameters(recurse=False))
    if not list(module.children()) and set(params) <= {"weight", "bias"} and "weight" in params:
        if params["weight"].dim() == 2 and cls.__name__.lower().endswith(("conv1d", "linear")):
            return "linear layer (weights untouched; exact on decoded spike trains)"
    if isinstance(module, (nn.ModuleList, nn.ModuleDict, nn.Sequential, nn.ParameterList, nn.ParameterDict)):
        return "container"
    buffers = dict(module.named_buffers(recurse=False))
    if "inv_freq" in buffers and not params:
        return "rotary position embedding (positions only)"
    if params and any(not torch.is_floating_point(b) for b in buffers.values()) and not list(module.children()):
        return "index lookup (a learned table indexed by positions)"
    if params and _is_elementwise_affine(module, params):
        return "elementwise affine (x * weight + bias: linear)"
    if not params and not buffers and not list(module.children()) and _is_identity(module):
        return "identity"
    return None


def random_copy(module: nn.Module) -> tuple[nn.Module, torch.Generator]:
    """A float32 copy of ``module`` with seeded random parameters (so a probe tells, e.g., ``w`` from
    ``1 + w`` whatever the model's init), and the generator to draw probe inputs from."""
    probe = copy.deepcopy(module).float()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in probe.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return probe, gen


def _is_elementwise_affine(module: nn.Module, params: dict) -> bool:
    """Whether ``module`` computes ``x * scale (+ shift)`` with its one or two 1-D parameters of one size,
    whatever their names (``weight``/``bias``; timm's LayerScale ``gamma``), checked on a probe with random
    parameters."""
    if not 1 <= len(params) <= 2 or any(p.dim() != 1 for p in params.values()):
        return False
    if len({p.numel() for p in params.values()}) != 1:
        return False
    probe, gen = random_copy(module)
    pp = dict(probe.named_parameters(recurse=False))
    with torch.no_grad():
        x = torch.randn(3, 5, next(iter(pp.values())).numel(), generator=gen)
        try:
            y = probe(x.clone())  # a copy: an in-place module (LayerScale(inplace=True)) must not change x
        except Exception:
            return False
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            return False
        for scale in pp:
            shift = sum((p for n, p in pp.items() if n != scale), torch.zeros(()))
            if torch.allclose(y, x * pp[scale] + shift, atol=1e-6):
                return True
        return False


def _is_identity(module: nn.Module) -> bool:
    x = torch.linspace(-3, 3, 16).reshape(2, 8)
    try:
        with torch.no_grad():
            y = module(x)
    except Exception:
        return False
    return isinstance(y, torch.Tensor) and y.shape == x.shape and bool(torch.equal(y, x))
