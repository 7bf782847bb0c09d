"""Fitting time per neuron table (the ``best`` recipe, as ``python -m mbe fit`` runs it); no baseline."""

from __future__ import annotations

#: label -> (function, N, T)
CASES = {"gelu N=4 T=16": ("gelu", 4, 16), "exp2 N=8 T=16": ("exp2", 8, 16), "rsqrt N=8 T=8": ("rsqrt", 8, 8)}


def cases(timesteps, event_timesteps):
    return [(label, label, "best", spec[2], 1) for label, spec in CASES.items()]


def build(label: str, impl: str, timesteps: int):
    from ..fitting import fit_neuron

    fn, n, t = CASES[label]
    return (lambda: fit_neuron(fn, n_basis=n, timesteps=t, recipe=impl)), 0, False
