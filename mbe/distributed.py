"""Evaluation sharded over processes (CPU workers or GPUs) under ``torchrun`` or ``accelerate launch``.

Both launchers start one process per worker and describe the job in environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`process_group` joins torch's process
group from them (``nccl`` on GPUs, ``gloo`` on CPUs). Each process evaluates every ``world``-th batch or window
(:func:`mbe.evaluate.classifier_records`, :func:`mbe.evaluate.language_model_records`); :func:`gather_records`
collects the per-sample records on every process in the order one process would have produced them, so the
summaries (:func:`mbe.evaluate.summarize_classifiers`, :func:`mbe.evaluate.summarize_language_models`) are the
same numbers a single process computes (given the same per-sample outputs: run every process with the same
number of threads, e.g. ``OMP_NUM_THREADS=1``, since CPU matrix products may round differently otherwise).

Example (2 GPUs; on CPUs add nothing, gloo is chosen)::

    torchrun --nproc-per-node 2 -m mbe evaluate gpt2-pydocs --conversion conv/ --timesteps 8 16
    accelerate launch --num_processes 2 -m mbe evaluate gpt2-pydocs --conversion conv/ --timesteps 8 16
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

#: the key each kind of record is ordered by
ORDER_KEYS = ("index", "position")


def world_size() -> int:
    """The number of processes the launcher started (1 without a launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None


def process_group() -> tuple[int, int]:
    """``(rank, world)``: this process's place in the job, joining torch's process group when a launcher
    started several (``gloo`` unless CUDA is available, then ``nccl``); ``(0, 1)`` alone."""
    world = world_size()
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def device() -> Optional[torch.device]:
    """This process's GPU under a launcher (``cuda:LOCAL_RANK``), ``cuda`` alone when there is one, else ``None``
    (the CPU)."""
    if not torch.cuda.is_available():
        return None
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def gather_records(records: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every process's records (``{name: [n_i] tensor}``, the same names everywhere) concatenated and sorted by
    their order key (``index`` or ``position``), on every process; unchanged with one process."""
    key = next((k for k in ORDER_KEYS if k in records), None)
    if key is None:
        raise ValueError(f"gather_records: records need one of the order keys {ORDER_KEYS}, got {sorted(records)}")
    if world_size() > 1:
        import torch.distributed as dist

        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, {k: v.cpu() for k, v in records.items()})
        records = {k: torch.cat([p[k] for p in parts]) for k in records}
    order = torch.argsort(records[key], stable=True)
    return {k: v[order] for k, v in records.items()}


def is_main() -> bool:
    """Whether this is the process that writes results (rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def close() -> None:
    """Leave the process group (if one was joined)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (nothing with one)."""
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def evaluate_sharded(
    ann,
    snn,
    *,
    batches=None,
    token_ids: Optional[Tensor] = None,
    context: int = 256,
    stride: int = 128,
    label_key: str = "labels",
    progress: bool = True,
) -> dict:
    """ANN against SNN on this job's processes: labelled ``batches`` (classifiers; the summary of
    :func:`mbe.evaluate.compare_classifiers`) or a ``token_ids`` stream (causal LMs; the summary of
    :func:`mbe.evaluate.compare_language_models`), every process taking its share and every process returning
    the summary of all of them, equal to a single process's. The models must already be on :func:`device`."""
    from .evaluate import classifier_records, language_model_records, summarize_classifiers, summarize_language_models

    if (batches is None) == (token_ids is None):
        raise ValueError("evaluate_sharded: pass either batches (classifiers) or token_ids (language models)")
    rank, world = process_group()
    show = progress and rank == 0
    if batches is not None:
        records = classifier_records(ann, snn, batches, label_key, show, shard=(rank, world), device=device())
        return summarize_classifiers(gather_records(records))
    records = language_model_records(ann, snn, token_ids, context, stride, show, shard=(rank, world), device=device())
    return summarize_language_models(gather_records(records), context, stride)
