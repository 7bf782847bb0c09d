r"""Spike statistics: one type for a neuron and for every neuron site of an operator.

:class:`SpikeStats` holds running totals for one neuron (``neuron.stats``) or one encoder inside an
operator (``OpStats.sites["softmax.exp2"]``):

.. math::

    \text{firing rate} = \frac{\text{spikes}}{\text{elements} \cdot N \cdot T}

``clamped`` counts inputs that fell outside a neuron's fitted domain or an encoder's calibrated range and
were clamped to it; ``sops`` counts synaptic operations (spike pairs in a product); ``macs`` the exact
(ANN) product's multiply-adds at the same site, for energy estimates.

:class:`OpStats` is the collection an operator caller owns (no global counters): one :class:`SpikeStats`
per internal key, ``as_frame()`` one DataFrame row each.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import pandas as pd


@dataclass
class SpikeStats:
    """Running totals of one neuron or one operator site (see the module docstring)."""

    function: str = ""
    n_basis: int = 1
    timesteps: int = 1
    calls: int = 0
    elements: int = 0
    spikes: int = 0
    clamped: int = 0
    sops: int = 0
    macs: int = 0

    @property
    def firing_rate(self) -> float:
        slots = self.elements * self.n_basis * self.timesteps
        return self.spikes / slots if slots else 0.0

    def record(self, *, elements: int, spikes: int, clamped: int = 0, sops: int = 0, macs: int = 0) -> None:
        """Add one call's counts."""
        self.calls += 1
        self.elements += int(elements)
        self.spikes += int(spikes)
        self.clamped += int(clamped)
        self.sops += int(sops)
        self.macs += int(macs)

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["firing_rate"] = self.firing_rate
        return d


class OpStats:
    """Running :class:`SpikeStats` per site key of one or more operator calls."""

    def __init__(self):
        self.sites: dict[str, SpikeStats] = {}

    def add(
        self,
        key: str,
        *,
        function: str,
        n_basis: int,
        timesteps: int,
        elements: int,
        spikes: int,
        sops: int = 0,
        clamped: int = 0,
    ) -> None:
        site = self.sites.get(key)
        if site is None:
            site = self.sites[key] = SpikeStats(function, n_basis, timesteps)
        site.record(elements=elements, spikes=spikes, clamped=clamped, sops=sops)

    def add_sops(self, key: str, sops: int, macs: int = 0) -> None:
        """Add spike-pair SOPs (and the exact product's multiply-adds) to an existing site."""
        self.sites[key].sops += int(sops)
        self.sites[key].macs += int(macs)

    def reset(self) -> None:
        self.sites.clear()

    def total(self, field: str) -> int:
        return sum(getattr(s, field) for s in self.sites.values())

    def as_frame(self) -> pd.DataFrame:
        """One row per site key: ``key`` and every :class:`SpikeStats` field, with ``firing_rate``."""
        return pd.DataFrame([{"key": key, **site.as_dict()} for key, site in self.sites.items()])

    def __repr__(self) -> str:
        return (
            f"OpStats({len(self.sites)} sites, spikes={self.total('spikes')}, sops={self.total('sops')}, "
            f"clamped={self.total('clamped')})"
        )
