"""Benchmarks (``python -m mbe bench``): wall-time and peak-memory ratios measured in one run.

Suites, one module each, every case against a baseline measured in the same run:

- ``neuron``: neuron forward throughput (elements/s) per path (eager torch, ``torch.compile``) against
  torch's own GELU, exp2 and reciprocal on the same elements;
- ``operators``: each spiking operator (fused, event) against its exact torch op, at ViT-B/16 layer sizes;
- ``models``: each converted zoo model's forward (fused and event) against its ANN;
- ``fitting``: fitting time per neuron table (baseline: the time recorded in the shipped table).

Every measurement runs in its own spawned process (see :mod:`mbe.benchmarks.measure`), so a peak is its
own. ``results/bench.csv`` gets one row per measurement with the columns :data:`COLUMNS`;
``results/bench.md`` a short summary with versions and machine facts.
"""

from .measure import COLUMNS, machine_info, run_suites, write_report

SUITES = ("neuron", "operators", "models", "fitting")

__all__ = ["COLUMNS", "SUITES", "machine_info", "run_suites", "write_report"]
