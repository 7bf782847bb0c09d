"""Bridges from converted models to other tools' evaluation APIs.

- :mod:`mbe.integrations.lm_eval`: EleutherAI's lm-evaluation-harness (``pip install -e '.[lmeval]'``):
  :func:`harness_model` wraps an ANN or its spiking twin as a harness ``LM``, :func:`evaluate_tasks` runs
  harness tasks (local task YAMLs included) at a chosen T.

Importing this package does not import the optional dependencies; the functions do, when called.
"""

from .lm_eval import evaluate_tasks, harness_model

__all__ = ["evaluate_tasks", "harness_model"]
