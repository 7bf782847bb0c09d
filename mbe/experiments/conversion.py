"""Conversion experiments behind notebooks 03-05 (Tables 1-3): ANN vs spiking twin by T."""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd

from ..convert import ConversionConfig, convert, set_timesteps
from ..evaluate import compare_classifiers, compare_language_models


def _sweep(ann, calibration, timesteps, domains, measure, model_name: str) -> list[dict]:
    """Convert once per activation-domain choice, then for every T (calibration reused,
    :func:`mbe.set_timesteps`) one row of ``measure(snn)`` and its wall time."""
    calibration = list(calibration)
    rows = []
    for domain in domains:
        snn = convert(
            ann, calibration, ConversionConfig(timesteps=max(timesteps), activation_domain=domain), progress=False
        )
        for t in timesteps:
            set_timesteps(snn, t)
            start = time.perf_counter()
            res = measure(snn)
            rows.append(
                {
                    "model": model_name,
                    "activation_domain": domain,
                    "timesteps": t,
                    **res,
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows


def classifier_sweep(
    ann,
    calibration,
    test_batches,
    timesteps: Sequence[int] = (16, 12, 10, 8, 6, 4),
    domains: Sequence[str] = ("table", "calibrated"),
    model_name: str = "model",
    progress: bool = True,
) -> pd.DataFrame:
    """Accuracy of ANN and SNN (and their agreement) for every T and activation-domain choice."""
    test_batches = list(test_batches)
    rows = _sweep(
        ann,
        calibration,
        timesteps,
        domains,
        lambda snn: compare_classifiers(ann, snn, test_batches, progress=progress),
        model_name,
    )
    frame = pd.DataFrame(rows)
    frame.insert(len(frame.columns) - 1, "delta_points", frame.snn_accuracy - frame.ann_accuracy)
    return frame


def lm_sweep(
    ann,
    calibration,
    token_ids,
    timesteps: Sequence[int] = (16, 12, 10, 8),
    domains: Sequence[str] = ("table", "calibrated"),
    context: int = 128,
    stride: int = 64,
    model_name: str = "model",
    progress: bool = True,
) -> pd.DataFrame:
    """Sliding-window perplexity of ANN and SNN (and their agreement) for every T and domain choice."""
    return pd.DataFrame(
        _sweep(
            ann,
            calibration,
            timesteps,
            domains,
            lambda snn: compare_language_models(ann, snn, token_ids, context=context, stride=stride, progress=progress),
            model_name,
        )
    )
