"""The public conversion functions: :func:`convert`, :func:`calibrate`, :func:`set_timesteps`,
:func:`reset_stats`, :func:`sites`."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from typing import Iterable, Optional

import torch
from torch import nn

from .base import SiteModule
from .config import ConversionConfig, check_timesteps
from .handlers.attention import OWNERS, route_attention
from .handlers.inline import InlineInterceptor
from .registry import Unsupported, find_handler, linear_reason
from .sites import AnalogModule, ConversionState, Site


class ConversionWarning(UserWarning):
    """Some modules or sites of a converted model stay analog (the conversion report says why)."""


def convert(
    model: nn.Module, calibration: Iterable[dict], config: Optional[ConversionConfig] = None, *, progress: bool = True
) -> nn.Module:
    """Return the spiking twin of ``model`` (a deep copy; ``model`` itself is untouched).

    Any ``nn.Module`` is accepted. Modules a registered handler recognises (by what they compute) are
    replaced by spiking modules that keep the same parameters; attention routed through transformers'
    ``AttentionInterface`` and inline nonlinear torch calls become spiking sites too. Every replacement is
    checked against the module it replaces on the calibration batches; a mismatch, or a module nothing
    recognises, stays analog, is listed in :func:`mbe.conversion_report` and named in one
    :class:`ConversionWarning` (``config.strict`` raises ``ValueError`` instead).

    Args:
        model: a ``torch.nn.Module`` (transformers, timm or your own).
        calibration: an iterable of input batches, each a dict of the model's forward keywords
            (e.g. ``{"input_ids": ..., "attention_mask": ...}``); at least one.
        config: :class:`ConversionConfig`.
    Returns:
        the converted model, called exactly like ``model``; ``snn.mbe_state`` holds the sites.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mbe.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if config is not None and not isinstance(config, ConversionConfig):
        raise TypeError(f"mbe.convert: config must be a ConversionConfig, got {type(config).__name__}")
    config = config or ConversionConfig()
    batches = _batches(calibration)
    snn, state = _prepare(model, config)
    from .persist import model_fingerprint

    state.model_fingerprint = model_fingerprint(model)
    calibrate(snn, batches, progress=progress)
    return snn


def _prepare(model: nn.Module, config: ConversionConfig) -> tuple[nn.Module, ConversionState]:
    """A deep copy of ``model`` with every recognised module replaced and attention routed to the spiking
    interface, and its (uncalibrated) state; shared by :func:`convert` and :func:`mbe.convert.persist.load`."""
    if getattr(getattr(model, "config", None), "reorder_and_upcast_attn", False):
        raise ValueError(
            "mbe.convert: GPT-2's reorder_and_upcast_attn path bypasses the attention interface; "
            "set config.reorder_and_upcast_attn=False (the result is the same up to float rounding)"
        )
    snn = copy.deepcopy(model).eval()
    state = ConversionState(config)
    _swap_modules(snn, state)
    for name, module in snn.named_modules():
        OWNERS[module] = (state, name)  # how the attention function finds its site
    note = route_attention(snn)
    if note is not None:
        state.analog.append(AnalogModule("(attention)", type(snn).__name__, note))
    snn.mbe_state = state
    return snn, state


def _batches(calibration) -> list:
    batches = list(calibration)
    if not batches:
        raise ValueError("mbe.convert: calibration is empty; pass at least one batch (a dict of forward kwargs)")
    for batch in batches:
        if not isinstance(batch, dict):
            raise TypeError(f"each calibration batch must be a dict of forward kwargs, got {type(batch).__name__}")
    return batches


def _swap_modules(root: nn.Module, state: ConversionState) -> None:
    """Replace every module a handler recognises, top-down; record the leaves nothing recognises."""

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent.named_children()):
            full = prefix + child_name
            cls = type(child).__name__
            found = find_handler(child)
            if found is not None:
                handler, answer = found
                if isinstance(answer, Unsupported):
                    state.analog.append(AnalogModule(full, cls, answer.reason))
                    visit(child, full + ".")
                    continue
                site = state.new_site(full, handler.kind, answer.function, answer.operator, handler.name, cls)
                replacement = handler.build(child, answer, site, state)
                setattr(parent, child_name, replacement)
                visit(replacement, full + ".")  # e.g. a gated MLP's activation is a site of its own
            elif next(child.children(), None) is None:
                if linear_reason(child) is None:
                    state.analog.append(
                        AnalogModule(full, cls, "no handler recognises what it computes (see mbe.register_site)")
                    )
            else:
                visit(child, full + ".")

    visit(root, "")


@torch.no_grad()
def calibrate(snn: nn.Module, calibration: Iterable[dict], progress: bool = True) -> None:
    """Run the batches with every site exact (paper Algorithm 1): record each site's input intervals, find
    inline nonlinear calls, and check every replacement against the module it replaced."""
    state = _state(snn)
    batches = _batches(calibration)
    for site in state.sites.values():
        site.reference_error, site.analog_reason = None, ""
    state.fitted.clear()  # new ranges: the activation neurons and their site groups are resolved again
    state.tail_fits.clear()
    state.groups.clear()
    it = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc="calibrating", leave=False)
    _remove_inline(snn)
    interceptor = InlineInterceptor(state)
    handles = _track_modules(snn, interceptor, root=snn)
    state.calibrating = True
    try:
        for batch in it:
            snn(**batch)
    finally:
        state.calibrating = False
        for h in handles:
            h.remove()
    _settle(snn, state)


def _track_modules(scope: nn.Module, interceptor: InlineInterceptor, root: nn.Module, prefix: str = "") -> list:
    """Forward hooks that keep ``interceptor.stack`` = the running modules under ``scope``; ``root``'s
    hooks also enter and leave the interceptor's mode."""
    handles = []
    for name, module in scope.named_modules(prefix=prefix.rstrip(".")):
        if module is root:

            def enter(m, args, n=name):
                interceptor.__enter__()
                interceptor.push(n, m)

            def leave(m, args, out):
                interceptor.pop()
                interceptor.__exit__(None, None, None)

            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave, always_call=True))
        else:
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: interceptor.push(n, m)))
            handles.append(module.register_forward_hook(lambda m, a, o: interceptor.pop(), always_call=True))
    return handles


def _remove_inline(snn: nn.Module) -> None:
    for h in getattr(snn, "_mbe_inline_hooks", []):
        h.remove()
    snn._mbe_inline_hooks = []


def _settle(snn: nn.Module, state: ConversionState) -> None:
    """After calibration: sites that mismatched or were never reached stay analog; modules owning inline
    sites keep an interceptor; one warning (or, strict, an error) names what stays analog."""
    tol = state.config.reference_tolerance
    for site in state.sites.values():
        if site.reference_error is None:
            site.analog_reason = "not reached by the calibration batches"
        elif not site.reference_error <= tol:
            site.analog_reason = (
                f"reference mismatch {site.reference_error:.3g} ({site.module_class}): the replacement's analog "
                f"math differs from the module it replaces beyond {tol:g}"
            )
    owners = {name.split(":")[0] for name, s in state.sites.items() if s.handler == "inline-call"}
    hooks = []
    for name, module in snn.named_modules():
        if name in owners:
            hooks += _track_modules(module, InlineInterceptor(state, only=module), root=module, prefix=name)
    snn._mbe_inline_hooks = hooks
    problems = [f"{a.name} ({a.module_class}): {a.reason}" for a in state.analog if a.name != "(attention)"]
    problems += [f"{s.name}: {s.analog_reason}" for s in state.sites.values() if s.analog_reason]
    if problems:
        message = (
            f"mbe.convert: {len(problems)} module(s)/site(s) of {type(snn).__name__} stay analog: "
            + "; ".join(problems[:12])
            + ("; ..." if len(problems) > 12 else "")
            + ". mbe.conversion_report(snn) lists them all."
        )
        if state.config.strict:
            raise ValueError(message + " (ConversionConfig(strict=False) keeps them analog instead)")
        warnings.warn(message, ConversionWarning, stacklevel=3)
    state.fit_activation_neurons()


def _state(snn: nn.Module) -> ConversionState:
    state = getattr(snn, "mbe_state", None)
    if not isinstance(state, ConversionState):
        raise ValueError(f"{type(snn).__name__} is not a converted model: run mbe.convert(model, calibration) first")
    return state


def sites(snn: nn.Module) -> dict[str, Site]:
    """The spiking sites of a converted model by name (``ValueError`` for a model that was not converted)."""
    return _state(snn).sites


def set_timesteps(snn: nn.Module, timesteps: int) -> nn.Module:
    """Change T in place, reusing the calibration (no recalibration; no refit with the shipped tables,
    one fit per activation function under ``activation_domain='calibrated'``)."""
    check_timesteps(timesteps)
    state = _state(snn)
    state.config = replace(state.config, timesteps=timesteps)
    state.fit_activation_neurons()
    return snn


def reset_stats(snn: nn.Module) -> None:
    """Zero every site's spike counters."""
    for site in sites(snn).values():
        site.stats.reset()


def spiking_modules(snn: nn.Module) -> list[SiteModule]:
    """The replacement modules of a converted model."""
    return [m for m in snn.modules() if isinstance(m, SiteModule)]
