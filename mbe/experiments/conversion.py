"""Conversion experiments behind notebooks 03-05 (Tables 1-3): ANN vs spiking twin by T."""

from __future__ import annotations

import time
from typing import Sequence

import pandas as pd

from ..convert import ConversionConfig, convert, set_timesteps
from ..convert.config import ACTIVATION_DOMAINS, PRESETS
from ..evaluate import compare_classifiers, compare_language_models


def sweep_config(choice: str, timesteps: int) -> ConversionConfig:
    """A sweep's configuration: a preset name (``"default"``, ``"paper"``, see
    :meth:`ConversionConfig.preset`) or an activation domain (the default config with that domain)."""
    if choice in PRESETS:
        return ConversionConfig.preset(choice, timesteps=timesteps)
    if choice in ACTIVATION_DOMAINS:
        return ConversionConfig(timesteps=timesteps, activation_domain=choice)
    raise ValueError(
        f"unknown configuration {choice!r}: give a preset {PRESETS} or an activation domain {ACTIVATION_DOMAINS}"
    )


def _sweep(ann, calibration, timesteps, domains, measure, model_name: str) -> list[dict]:
    """Convert once per configuration (:func:`sweep_config`), then for every T (calibration reused,
    :func:`mbe.set_timesteps`) one row of ``measure(snn)`` and its wall time."""
    calibration = list(calibration)
    rows = []
    for choice in domains:
        config = sweep_config(choice, max(timesteps))
        snn = convert(ann, calibration, config, progress=False)
        for t in timesteps:
            set_timesteps(snn, t)
            start = time.perf_counter()
            res = measure(snn)
            rows.append(
                {
                    "model": model_name,
                    "config": choice,
                    "activation_domain": config.activation_domain,
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
    """Accuracy of ANN and SNN (and their agreement) for every T and configuration (:func:`sweep_config`)."""
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
    """Sliding-window perplexity of ANN and SNN (and their agreement) for every T and configuration
    (:func:`sweep_config`)."""
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


def zoo_error_budget(
    name: str,
    timesteps: Sequence[int] = (8, 16),
    eval_limit: int = 200,
    calibration_limit: int = 32,
    layers: bool = True,
    config: str = "default",
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`mbe.error_budget` of a zoo model (``mbe.zoo.MODELS``): calibrated on its training split (the
    language models: windows from the end of their evaluation text), measured on the first ``eval_limit``
    held-out samples (classifiers: accuracy) or tokens (language models: perplexity, windows of their
    context), under a configuration of :func:`sweep_config`. Adds a ``model`` column."""
    from ..convert import error_budget
    from ..zoo import MODELS

    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; choose from {sorted(MODELS)}")
    zoo = MODELS[name]
    lm = hasattr(zoo, "eval_tokens")
    if lm:  # calibration windows from the end of the held-out text, evaluation windows from its start
        ctx = zoo.RECIPE["context"]
        ids = zoo.eval_tokens()
        windows = ids[: ids.numel() // ctx * ctx].reshape(-1, ctx)
        n_eval = eval_limit // ctx
        if n_eval == 0:
            raise ValueError(f"eval_limit={eval_limit} is shorter than {name}'s context ({ctx} tokens)")
        tail = windows[n_eval:].flip(0)[:calibration_limit]
        calib = [{"input_ids": tail[i : i + 2]} for i in range(0, len(tail), 2)]
        evaluation = [{"input_ids": windows[i : min(i + 2, n_eval)]} for i in range(0, n_eval, 2)]
    else:
        calib = zoo.batches("train", batch_size=32, limit=calibration_limit, labels=False)
        evaluation = zoo.batches("test", batch_size=50, limit=eval_limit)
    frame = error_budget(
        zoo.load(),
        calib,
        evaluation,
        sweep_config(config, max(timesteps)),
        timesteps=timesteps,
        layers=layers,
        progress=progress,
    )
    frame.insert(0, "model", name)
    frame.insert(1, "config", config)
    return frame
