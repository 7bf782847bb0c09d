"""Conversion experiments behind notebooks 03-05 (Tables 1-3): ANN vs spiking twin by T."""
from __future__ import annotations

import time
from typing import Sequence

import pandas as pd

from ..convert import ConversionConfig, convert, set_timesteps
from ..evaluate import compare_classifiers, compare_language_models

#: the paper's ViT-B/16 ImageNet row of Tables 1 and 4 (top-1 %, ANN 83.44)
PAPER_VIT_B16 = {"ann": 83.44, 16: 83.00, 12: 82.79, 10: 79.96, 8: 0.12}
#: the paper's RoBERTa-base MR row of Tables 2 and 4 (accuracy %, ANN 89.39)
PAPER_ROBERTA_BASE_MR = {"ann": 89.39, 16: 89.00, 12: 88.55, 10: 71.30, 8: 50.17}
#: the paper's Table 2 at T=16: RoBERTa-base, task -> (ANN, SNN) accuracy %
PAPER_TABLE2 = {"SST-2": (94.49, 93.46), "SST-5": (55.46, 55.11), "MR": (89.39, 89.00), "Subj": (96.45, 96.30)}
#: the paper's GPT-2 (346M) WikiText-103 perplexity row of Tables 3 and 4 (ANN 22.65)
PAPER_GPT2_WIKI103 = {"ann": 22.65, 16: 23.41, 12: 33.56, 10: 11992.0, 8: 41072.0}
#: the paper's Table 3 at T=16: GPT-2 (346M) perplexity, (ANN, SNN)
PAPER_TABLE3 = {"WikiText-2": (22.34, 22.69), "WikiText-103": (22.65, 23.41)}


def _sweep(ann, calibration, timesteps, domains, measure, model_name: str) -> list[dict]:
    """Convert once per activation-domain choice, then for every T (calibration reused,
    :func:`mbe.set_timesteps`) one row of ``measure(snn)`` and its wall time."""
    calibration = list(calibration)
    rows = []
    for domain in domains:
        snn = convert(ann, calibration, ConversionConfig(timesteps=max(timesteps), activation_domain=domain),
                      progress=False)
        for t in timesteps:
            set_timesteps(snn, t)
            start = time.perf_counter()
            res = measure(snn)
            rows.append({"model": model_name, "activation_domain": domain, "timesteps": t, **res,
                         "seconds": time.perf_counter() - start})
    return rows


def classifier_sweep(ann, calibration, test_batches, timesteps: Sequence[int] = (16, 12, 10, 8, 6, 4),
                     domains: Sequence[str] = ("table", "calibrated"), model_name: str = "model",
                     progress: bool = True) -> pd.DataFrame:
    """Accuracy of ANN and SNN (and their agreement) for every T and activation-domain choice."""
    test_batches = list(test_batches)
    rows = _sweep(ann, calibration, timesteps, domains,
                  lambda snn: compare_classifiers(ann, snn, test_batches, progress=progress), model_name)
    frame = pd.DataFrame(rows)
    frame.insert(len(frame.columns) - 1, "delta_points", frame.snn_accuracy - frame.ann_accuracy)
    return frame


def lm_sweep(ann, calibration, token_ids, timesteps: Sequence[int] = (16, 12, 10, 8),
             domains: Sequence[str] = ("table", "calibrated"), context: int = 128, stride: int = 64,
             model_name: str = "model", progress: bool = True) -> pd.DataFrame:
    """Sliding-window perplexity of ANN and SNN (and their agreement) for every T and domain choice."""
    return pd.DataFrame(_sweep(ann, calibration, timesteps, domains, lambda snn: compare_language_models(
        ann, snn, token_ids, context=context, stride=stride, progress=progress), model_name))
