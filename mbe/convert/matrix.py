"""The support matrix: tiny random models of many transformers architectures, converted with the default
config, with what was converted, what stayed analog and why, and the relative logit error by T.

``python -m mbe support-matrix`` writes ``results/support_matrix.csv`` and ``.md``. The models are random
(:mod:`mbe.zoo.tiny`), so errors show that every site is wired and how far each architecture's building
blocks are from the ANN, not task accuracy.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd
import torch

from .api import convert, reset_stats, set_timesteps
from .api import sites as spiking_sites
from .config import SITE_KINDS, ConversionConfig
from .report import conversion_report

#: the seed of the held-out batch (:func:`mbe.zoo.tiny.tiny_model` ``(arch, seed)[1]``: other token ids / pixels)
HELD_OUT_SEED = 1


def relative_logit_error(ann: torch.nn.Module, snn: torch.nn.Module, batch: dict) -> float:
    """``||snn(batch) - ann(batch)|| / ||ann(batch)||`` over the logits (float64)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ann(**batch).logits.double()
        s = snn(**batch).logits.double()
    return float(torch.linalg.vector_norm(s - a) / torch.linalg.vector_norm(a))


def matrix_row(arch: str, timesteps: Iterable[int] = (8, 16, 32), config: Optional[ConversionConfig] = None) -> dict:
    """Convert the tiny ``arch`` (calibrated on its example batch) and measure it at each T: the relative logit
    error on the calibration batch, and on a held-out batch of the same shape (:data:`HELD_OUT_SEED`) with the
    number of inputs clamped to the calibrated ranges there (every calibration input is inside them)."""
    from ..zoo.tiny import tiny_model

    model, batch = tiny_model(arch)
    held_out = tiny_model(arch, seed=HELD_OUT_SEED)[1]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = convert(model, [batch], config or ConversionConfig(), progress=False)
    seconds = time.perf_counter() - start
    report = conversion_report(snn)
    sites = report[report.kind.isin(SITE_KINDS)]
    row = {"arch": arch, "model_class": type(model).__name__}
    for kind in SITE_KINDS:
        row[f"{kind}_sites"] = int(((sites.kind == kind) & sites.spiking).sum())
    analog_sites = sites[~sites.spiking.astype(bool)]
    analog_modules = report[report.kind == "analog"]
    reasons = [f"{r.site}: {r.status}" for r in analog_sites.itertuples()]
    reasons += [f"{r.site} ({r.operator}): {r.status}" for r in analog_modules.itertuples()]
    row["analog"] = len(analog_sites) + len(analog_modules)
    row["analog_reasons"] = " | ".join(reasons)
    row["max_reference_error"] = float(sites.reference_error.max()) if len(sites) else float("nan")
    timesteps = sorted(timesteps)
    for t in timesteps:
        set_timesteps(snn, t)
        row[f"rel_error_T{t}"] = relative_logit_error(model, snn, batch)
    errs = [row[f"rel_error_T{t}"] for t in timesteps]
    row["more_t_never_hurts"] = all(b <= a for a, b in zip(errs, errs[1:], strict=False))
    for t in timesteps:  # a batch the calibration never saw; its inputs beyond the calibrated ranges are clamped
        set_timesteps(snn, t)
        reset_stats(snn)
        row[f"held_out_error_T{t}"] = relative_logit_error(model, snn, held_out)
        row[f"held_out_clamped_T{t}"] = sum(s.stats.total("clamped") for s in spiking_sites(snn).values() if s.spiking)
    ann_state, snn_state = model.state_dict(), snn.state_dict()
    row["weights_untouched"] = set(ann_state) == set(snn_state) and all(
        torch.equal(ann_state[k], snn_state[k]) for k in ann_state
    )
    row["energy_ratio_counted"] = _spiking_energy_ratio(snn) if len(sites) else float("nan")
    row["convert_seconds"] = seconds
    return row


def _spiking_energy_ratio(snn) -> float:
    """SNN/ANN energy of the spiking sites (every spike counted) after the last forward (Eq. 14)."""
    from ..energy import energy_summary

    summary = energy_summary(snn).set_index("part")
    return float(summary.loc["spiking sites", "ratio_counted"])


def support_matrix(
    archs: Optional[Iterable[str]] = None, timesteps: Iterable[int] = (8, 16, 32), progress: bool = True
) -> pd.DataFrame:
    """One :func:`matrix_row` per architecture (default: every one in :data:`mbe.zoo.tiny.TINY_ARCHS`)."""
    from ..zoo.tiny import TINY_ARCHS

    archs = list(archs or TINY_ARCHS)
    it = archs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(archs, desc="support matrix", unit="model")
    rows = []
    for arch in it:
        if progress:
            it.set_postfix_str(arch)
        rows.append(matrix_row(arch, timesteps))
    return pd.DataFrame(rows)


def write_support_matrix(frame: pd.DataFrame, out_dir="results") -> tuple[Path, Path]:
    """``support_matrix.csv`` and a markdown table ``support_matrix.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / "support_matrix.csv", out / "support_matrix.md"
    frame.to_csv(csv, index=False)
    errs = [c for c in frame.columns if c.startswith("rel_error_T")]
    held = [c for c in frame.columns if c.startswith("held_out_")]
    cols = [
        "arch",
        "model_class",
        *[f"{k}_sites" for k in SITE_KINDS],
        "analog",
        *errs,
        "more_t_never_hurts",
        *held,
        "weights_untouched",
        "convert_seconds",
    ]
    lines = [
        "# Support matrix",
        "",
        "Command: `python -m mbe support-matrix`. Tiny random models (`mbe.zoo.tiny`), default `ConversionConfig`,",
        "calibrated on one batch, relative logit error `||snn - ann|| / ||ann||` on that batch;",
        "`more_t_never_hurts`: the error does not grow from one T to the next. `held_out_error`: the same on a",
        "batch calibration never saw (`tiny_model(arch, seed=1)`'s inputs), `held_out_clamped`: how many of its",
        "inputs fell outside the calibrated ranges and were clamped. `convert_seconds` includes fitting",
        "activation neurons on calibrated domains when the fit cache does not hold them yet.",
        "",
        "| " + " | ".join(c.replace("_sites", "") for c in cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in frame.itertuples():
        vals = []
        for c in cols:
            v = getattr(r, c)
            is_error = c.startswith(("rel_error", "held_out_error"))
            vals.append(f"{v:.4f}" if is_error else f"{v:.1f}" if c == "convert_seconds" else str(v))
        lines.append("| " + " | ".join(vals) + " |")
    lines += ["", "What stays analog, and why:", ""]
    for r in frame.itertuples():
        if isinstance(r.analog_reasons, str) and r.analog_reasons:
            lines.append(f"- **{r.arch}**: {r.analog_reasons}")
    md.write_text("\n".join(lines) + "\n")
    return csv, md
