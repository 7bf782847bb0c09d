"""Spike statistics for spiking operators: an explicit object the caller owns (no global counters).

Every operator takes ``stats=None | OpStats``; when given, it adds one record per neuron site it ran
(keyed like ``"softmax.exp2"`` or ``"matmul.a"``): elements encoded, spikes, firing rate
``spikes / (elements * N * T)``, synaptic operations, the exact product's multiply-adds (``macs``, on a
product's ``.a`` row, for energy estimates) and saturations (inputs clamped at an encoding
range or a neuron's domain).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd


@dataclass
class SiteCounts:
    neuron: str
    n_basis: int
    timesteps: int
    calls: int = 0
    elements: int = 0
    spikes: int = 0
    sops: int = 0
    saturated: int = 0
    macs: int = 0  # multiply-adds of the exact (ANN) product at this site; 0 for neuron-only sites

    @property
    def firing_rate(self) -> float:
        slots = self.elements * self.n_basis * self.timesteps
        return self.spikes / slots if slots else 0.0


class OpStats:
    """Running totals per site key. ``as_frame()`` gives a DataFrame, one row per site."""

    def __init__(self):
        self.sites: dict[str, SiteCounts] = {}

    def add(self, key: str, *, neuron: str, n_basis: int, timesteps: int, elements: int, spikes: int,
            sops: int = 0, saturated: int = 0) -> None:
        site = self.sites.get(key)
        if site is None:
            site = self.sites[key] = SiteCounts(neuron, n_basis, timesteps)
        site.calls += 1
        site.elements += int(elements)
        site.spikes += int(spikes)
        site.sops += int(sops)
        site.saturated += int(saturated)

    def add_sops(self, key: str, sops: int, macs: int = 0) -> None:
        """Add spike-pair SOPs (and the exact product's multiply-adds) to an existing site."""
        self.sites[key].sops += int(sops)
        self.sites[key].macs += int(macs)

    def reset(self) -> None:
        self.sites.clear()

    def total(self, field: str) -> int:
        return sum(getattr(s, field) for s in self.sites.values())

    def as_frame(self) -> pd.DataFrame:
        rows = []
        for key, site in self.sites.items():
            row = {"site": key, **{f.name: getattr(site, f.name) for f in fields(site)}}
            row["firing_rate"] = site.firing_rate
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"OpStats({len(self.sites)} sites, spikes={self.total('spikes')}, sops={self.total('sops')}, " \
               f"saturated={self.total('saturated')})"
