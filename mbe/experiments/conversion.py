"""Conversion experiments behind ``notebooks/03_table1_vision.ipynb``: ANN vs spiking twin by T."""
from __future__ import annotations

import time
from typing import Sequence

import pandas as pd

from ..convert import ConversionConfig, convert, set_timesteps
from ..evaluate import compare_classifiers

#: the paper's ViT-B/16 ImageNet row of Tables 1 and 4 (top-1 %, ANN 83.44)
PAPER_VIT_B16 = {"ann": 83.44, 16: 83.00, 12: 82.79, 10: 79.96, 8: 0.12}


def classifier_sweep(ann, calibration, test_batches, timesteps: Sequence[int] = (16, 12, 10, 8, 6, 4),
                     domains: Sequence[str] = ("table", "calibrated"), model_name: str = "model",
                     progress: bool = True) -> pd.DataFrame:
    """Accuracy of ANN and SNN (and their agreement) for every T and activation-domain choice.

    Calibration runs once per domain choice; T changes reuse it (:func:`mbe.set_timesteps`).
    """
    calibration, test_batches = list(calibration), list(test_batches)
    rows = []
    for domain in domains:
        snn = convert(ann, calibration, ConversionConfig(timesteps=max(timesteps), activation_domain=domain),
                      progress=False)
        for t in timesteps:
            set_timesteps(snn, t)
            start = time.perf_counter()
            res = compare_classifiers(ann, snn, test_batches, progress=progress)
            rows.append({"model": model_name, "activation_domain": domain, "timesteps": t, **res,
                         "delta_points": res["snn_accuracy"] - res["ann_accuracy"],
                         "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)
