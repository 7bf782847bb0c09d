r"""The error budget of a conversion: where the spiking model's error comes from.

:func:`error_budget` converts a model once, then measures the metric change against the ANN with

- ``all``: every site the config converts spiking;
- ``kind``: only the sites of one kind spiking (attention, norm, activation, gated product, pool);
- ``layer``: only the sites of one layer spiking (every kind; a layer is a site name up to its first
  numeric component, e.g. ``model.layers.3``; sites outside numbered blocks form ``(outside layers)``);
- ``cumulative``: kinds switched on one after another in :data:`SITE_KINDS` order;
- ``none``: no site spiking (the analog references only; its change checks the budget's zero),

at every requested T. Metrics (``metric="auto"`` picks one from the batches and the logits):

- ``accuracy`` (batches carry ``[B]`` class labels): change in points, :math:`acc_{SNN} - acc_{ANN}`;
- ``perplexity`` (causal LMs: labels shaped like ``input_ids``, or none and ``[B, L, V]`` logits): change in
  percent, :math:`100\,(ppl_{SNN}/ppl_{ANN} - 1)`, next-token cross-entropy over unmasked positions;
- ``logit_error`` (anything else): :math:`\lVert z_{SNN} - z_{ANN}\rVert / \lVert z_{ANN}\rVert` over all
  evaluation logits.

Every row also carries the relative logit error and the top-1 agreement, whatever the metric.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Callable, Iterable, Optional

import pandas as pd
import torch
from torch import nn

from .api import _batches, _state, convert, set_timesteps
from .config import SITE_KINDS, ConversionConfig, check_timesteps

METRICS = ("auto", "accuracy", "perplexity", "logit_error")
OUTSIDE_LAYERS = "(outside layers)"


def layer_of(site_name: str) -> str:
    """The layer a site belongs to: its name up to the first numeric component (``model.layers.3.mlp`` ->
    ``model.layers.3``), or :data:`OUTSIDE_LAYERS`."""
    parts = site_name.split(":")[0].split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return OUTSIDE_LAYERS


@contextmanager
def only_sites(snn: nn.Module, keep: Callable) -> Iterable[int]:
    """Within the block, only the sites for which ``keep(site)`` is true (and the config enables) spike;
    yields how many do. The config's own selection is restored afterwards."""
    state = _state(snn)
    state.refresh_enabled()
    try:
        for site in state.sites.values():
            site.enabled = site.enabled and bool(keep(site))
        yield sum(s.spiking for s in state.sites.values())
    finally:
        state.refresh_enabled()


def _pick_metric(metric: str, batch: dict, labels: Optional[torch.Tensor], logits: torch.Tensor) -> str:
    if metric != "auto":
        return metric
    if labels is not None and labels.dim() == 1 and logits.dim() == 2:
        return "accuracy"
    if logits.dim() == 3 and "input_ids" in batch and (labels is None or labels.shape == batch["input_ids"].shape):
        return "perplexity"
    return "logit_error"


def _logits(model: nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clamped inputs are counted in the conversion report
        return model(**batch).logits.double()


class _Tally:
    """Sums over the evaluation batches for one pass of one model against the ANN."""

    def __init__(self, metric: str):
        self.metric = metric
        self.n = self.hits = self.agree = self.positions = 0
        self.nll = self.diff2 = self.ref2 = 0.0

    def add(self, ann: torch.Tensor, snn: torch.Tensor, batch: dict, labels: Optional[torch.Tensor]) -> None:
        self.diff2 += float(((snn - ann) ** 2).sum())
        self.ref2 += float((ann**2).sum())
        pa, ps = ann.argmax(-1), snn.argmax(-1)
        self.agree += int((pa == ps).sum())
        self.positions += pa.numel()
        if self.metric == "accuracy":
            self.hits += int((ps == labels).sum())
            self.n += labels.numel()
        elif self.metric == "perplexity":
            targets = (labels if labels is not None else batch["input_ids"])[:, 1:]
            mask = targets != -100
            if "attention_mask" in batch and labels is None:
                mask &= batch["attention_mask"][:, 1:].bool()
            logp = snn[:, :-1].log_softmax(-1)
            picked = logp.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
            self.nll -= float(picked[mask].sum())
            self.n += int(mask.sum())
        else:
            self.n += snn.shape[0]

    def value(self) -> float:
        if self.metric == "accuracy":
            return 100.0 * self.hits / max(self.n, 1)
        if self.metric == "perplexity":
            return math.exp(self.nll / max(self.n, 1))
        return self.rel_error()

    def rel_error(self) -> float:
        return math.sqrt(self.diff2 / self.ref2) if self.ref2 > 0 else 0.0


def _change(metric: str, ann: float, snn: float) -> float:
    if metric == "accuracy":
        return snn - ann
    if metric == "perplexity":
        return 100.0 * (snn / ann - 1.0)
    return snn


def error_budget(
    model: nn.Module,
    calibration: Iterable[dict],
    evaluation: Iterable[dict],
    config: Optional[ConversionConfig] = None,
    *,
    timesteps: Iterable[int] = (8, 16),
    metric: str = "auto",
    label_key: str = "labels",
    layers: bool = True,
    snn: Optional[nn.Module] = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Measure where a conversion's error comes from (see the module docstring).

    Args:
        model: the ANN (left untouched).
        calibration: batches to convert with (ignored when ``snn`` is given).
        evaluation: batches to measure on; dicts of forward keywords, plus ``label_key`` for accuracy or
            perplexity labels.
        config: the conversion config (default :class:`ConversionConfig`); its ``convert`` and ``exclude``
            bound every scope.
        timesteps: the T values to measure at (each in [1, 64]).
        metric: ``"auto"``, ``"accuracy"``, ``"perplexity"`` or ``"logit_error"``.
        layers: add the one-layer-at-a-time rows (one pass per layer and T).
        snn: an already converted ``model`` to reuse (its T is restored afterwards).
    Returns:
        one row per (T, scope, part): ``timesteps, scope, part, sites`` (spiking in that pass),
        ``metric, ann, snn, change`` (points, percent or the relative error; see the module docstring),
        ``rel_logit_error, agreement`` (percent of top-1 predictions equal to the ANN's), ``samples``.
    """
    if metric not in METRICS:
        raise ValueError(f"error_budget: metric must be one of {METRICS}, got {metric!r}")
    ts = [timesteps] if isinstance(timesteps, int) else list(timesteps)
    if not ts:
        raise ValueError("error_budget: timesteps is empty; pass e.g. (8, 16)")
    for t in ts:
        check_timesteps(t)
    batches = _batches(evaluation)
    if snn is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snn = convert(model, calibration, config, progress=progress)
    state = _state(snn)
    split = []
    for batch in batches:
        batch = dict(batch)
        split.append((batch, batch.pop(label_key, None)))
    ann_logits = [_logits(model, b).float() for b, _ in split]  # kept float32 (an LM's logits are large)
    chosen = _pick_metric(metric, split[0][0], split[0][1], ann_logits[0])
    if chosen == "accuracy" and any(lab is None for _, lab in split):
        raise ValueError(f"error_budget: metric 'accuracy' needs {label_key!r} class labels in every evaluation batch")

    present = [k for k in SITE_KINDS if any(s.kind == k and s.spiking for s in state.sites.values())]
    scopes = [("none", "none", lambda s: False), ("all", "all", lambda s: True)]
    scopes += [("kind", k, lambda s, k=k: s.kind == k) for k in present]
    for i in range(1, len(present)):
        chosen_kinds = set(present[: i + 1])
        scopes.append(("cumulative", "+".join(present[: i + 1]), lambda s, c=chosen_kinds: s.kind in c))
    if layers:
        names = list(dict.fromkeys(layer_of(n) for n, s in state.sites.items() if s.spiking))
        scopes += [("layer", name, lambda s, name=name: layer_of(s.name) == name) for name in names]

    ann_tally = _Tally(chosen)
    for (b, lab), a in zip(split, ann_logits, strict=True):
        ann_tally.add(a.double(), a.double(), b, lab)
    ann_value = ann_tally.value() if chosen != "logit_error" else 0.0

    saved_t = state.config.timesteps
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ts) * len(scopes), desc="error budget", unit="pass")
    try:
        for t in ts:
            set_timesteps(snn, t)
            for scope, part, keep in scopes:
                if bar is not None:
                    bar.set_postfix_str(f"T={t} {scope} {part}")
                with only_sites(snn, keep) as n_sites:
                    tally = _Tally(chosen)
                    for (b, lab), a in zip(split, ann_logits, strict=True):
                        tally.add(a.double(), _logits(snn, b), b, lab)
                value = tally.value()
                rows.append(
                    {
                        "timesteps": t,
                        "scope": scope,
                        "part": part,
                        "sites": n_sites,
                        "metric": chosen,
                        "ann": ann_value,
                        "snn": value,
                        "change": _change(chosen, ann_value, value),
                        "rel_logit_error": tally.rel_error(),
                        "agreement": 100.0 * tally.agree / max(tally.positions, 1),
                        "samples": tally.n,
                    }
                )
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        set_timesteps(snn, saved_t)
    return pd.DataFrame(rows)
