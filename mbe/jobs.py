"""What ``python -m mbe convert`` and ``python -m mbe evaluate`` do, as functions: convert a named model on its
calibration data and save the conversion (:func:`convert_source`); compare the ANN with its spiking twin at
several T on the held-out data, sharded over the processes of a ``torchrun``/``accelerate launch`` job
(:func:`evaluate_source`). Models are named as in :func:`mbe.zoo.source` (embedded zoo models, or the paper's
models from the hub or from local copies)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from . import distributed
from .convert import ConversionConfig, convert, load, save, set_timesteps
from .zoo import context_of, is_language_model, source

#: calibration samples (classifiers) or windows (language models) when none are asked for
DEFAULT_CALIBRATION = {"classifier": 64, "language-model": 8}


def calibration_batches(src, calibration: Optional[int] = None, batch_size: int = 32) -> list[dict]:
    """``calibration`` samples (classifiers) or context windows (language models) of the source's
    calibration split (disjoint from its evaluation data), without labels."""
    kind = "language-model" if is_language_model(src) else "classifier"
    n = DEFAULT_CALIBRATION[kind] if calibration is None else calibration
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"calibration must be a positive number of samples, got {calibration!r}")
    return src.batches("train", batch_size=batch_size, limit=n, labels=False)


def convert_source(
    name: str,
    *,
    timesteps: int = 16,
    preset: str = "default",
    calibration: Optional[int] = None,
    batch_size: int = 32,
    out=None,
    models_dir=None,
    data_dir=None,
    progress: bool = True,
):
    """Load model ``name``, convert it on its calibration data under ``ConversionConfig.preset(preset)`` at
    ``timesteps`` and, with ``out``, save the conversion there (:func:`mbe.save`). Returns ``(ann, snn)``."""
    src = source(name, models_dir, data_dir)
    ann = src.load()
    config = ConversionConfig.preset(preset, timesteps=timesteps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what stays analog is in the saved record and the conversion report
        snn = convert(ann, calibration_batches(src, calibration, batch_size), config, progress=progress)
    if out is not None:
        save(snn, out, source=name)
    return ann, snn


def evaluate_source(
    name: str,
    timesteps: Sequence[int] = (16,),
    *,
    conversion=None,
    preset: str = "default",
    calibration: Optional[int] = None,
    limit: Optional[int] = None,
    batch_size: int = 32,
    context: Optional[int] = None,
    stride: Optional[int] = None,
    models_dir=None,
    data_dir=None,
    progress: bool = True,
) -> pd.DataFrame:
    """ANN against SNN for model ``name`` at every T of ``timesteps``, one row per T (the metrics of
    :func:`mbe.compare_classifiers` or :func:`mbe.compare_language_models`, plus ``model``, ``timesteps``,
    ``processes`` and ``seconds``).

    ``conversion``: a folder :func:`mbe.save` wrote (``python -m mbe convert``); without it the model is converted
    here (under a launcher, process 0 first, so that the others find its fits in the cache). ``limit``: held-out
    samples (classifiers) or tokens (language models), all by default. Under ``torchrun``/``accelerate launch``
    every process evaluates its share (:mod:`mbe.distributed`) and every process returns the same rows.
    """
    if not timesteps:
        raise ValueError("evaluate_source: timesteps is empty; give at least one T")
    rank, world = distributed.process_group()
    src = source(name, models_dir, data_dir)
    ann = src.load()
    if conversion is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snn = load(conversion, ann)
    else:
        config = ConversionConfig.preset(preset, timesteps=timesteps[0])
        calib = calibration_batches(src, calibration, batch_size)

        def make():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return convert(ann, calib, config, progress=progress and rank == 0)

        snn = _in_turns(make)
    _in_turns(lambda: [set_timesteps(snn, t) for t in timesteps])  # every T's neurons fitted (or read) once
    dev = distributed.device()
    if dev is not None:
        ann, snn = ann.to(dev), snn.to(dev)
    language = is_language_model(src)
    if language:
        ctx = context or context_of(src)
        data = {"token_ids": src.eval_tokens(limit=limit), "context": ctx, "stride": stride or ctx // 2}
    else:
        data = {"batches": src.batches("test", batch_size=batch_size, limit=limit)}
    rows = []
    for t in timesteps:
        set_timesteps(snn, t)
        start = time.perf_counter()
        row = distributed.evaluate_sharded(ann, snn, progress=progress, **data)
        rows.append({"model": name, "timesteps": t, "processes": world, **row, "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


def _in_turns(fn):
    """``fn()`` on process 0 first, then on the others (which find process 0's fits in the fit cache instead of
    fitting the same neurons at once); just ``fn()`` alone."""
    rank, world = distributed.process_group()
    result = None
    for turn in range(2 if world > 1 else 1):
        if (rank == 0) == (turn == 0):
            result = fn()
        distributed.barrier()
    return result


def write_rows(frame: pd.DataFrame, path) -> Path:
    """Append ``frame`` to the CSV at ``path`` (created with a header if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, mode="a", header=not path.is_file(), index=False)
    return path
