"""``conversion_report``: one row per spiking site, then one per module or part that stays analog."""

from __future__ import annotations

import pandas as pd
from torch import nn

from .api import _state
from .api import sites as _sites

#: the linear parts every converted model keeps analog by design
LINEAR_PARTS = (
    "embeddings and position encodings (lookups)",
    "residual additions",
    "linear layers (weights untouched; exact on decoded spike trains)",
)


#: the quantiles of each site input the report shows (from the calibration sketches)
QUANTILES = (0.001, 0.5, 0.999)


def conversion_report(snn: nn.Module) -> pd.DataFrame:
    """One row per site: kind, operator, status, handler, the class it replaced, the reference check, N, T,
    calibrated ranges, the 0.1/50/99.9 % quantiles of the calibration inputs and (after a run) spikes, firing rate, synaptic operations and clamped inputs; then one
    row per module that stays analog with the reason, and the linear parts."""
    from ..functions import get_function

    state = _state(snn)
    cfg = state.config
    rows = []
    for site in _sites(snn).values():
        frame = site.stats.as_frame()
        spikes = int(frame.spikes.sum()) if len(frame) else 0
        slots = int((frame.elements * frame.n_basis * frame.timesteps).sum()) if len(frame) else 0
        fn = site.function
        override = (cfg.neurons or {}).get(fn)
        n = override.n_basis if override is not None else (cfg.basis(fn) or get_function(fn).n_basis)
        fitted = state.fitted_neuron(fn, site) if site.kind == "activation" else None
        fitted = override if override is not None else fitted
        if site.spiking:
            status = "spiking"
        elif site.analog_reason:
            status = f"analog: {site.analog_reason}"
        else:
            status = "analog: excluded by the config"
        rows.append(
            {
                "site": site.name,
                "kind": site.kind,
                "operator": site.operator,
                "spiking": site.spiking,
                "status": status,
                "handler": site.handler,
                "module_class": site.module_class,
                "reference_error": site.reference_error,
                "neuron_domain": str(fitted.domain)
                if fitted is not None
                else (str(get_function(fn).domain) if site.kind == "activation" else ""),
                "n_basis": n,
                "timesteps": cfg.timesteps,
                "mode": cfg.mode,
                "ranges": "; ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi) in site.ranges.items()),
                "quantiles": "; ".join(
                    f"{k} " + "/".join(f"{v:.3g}" for v in site.quantiles(k, QUANTILES).tolist()) for k in site.sketches
                ),
                "spikes": spikes,
                "firing_rate": spikes / slots if slots else float("nan"),
                "sops": int(frame.sops.sum()) if len(frame) else 0,
                "clamped": int(frame.clamped.sum()) if len(frame) else 0,
            }
        )
    for a in state.analog:
        rows.append(
            {
                "site": a.name,
                "kind": "analog",
                "operator": a.module_class,
                "spiking": False,
                "status": a.reason,
                "module_class": a.module_class,
            }
        )
    for part in LINEAR_PARTS:
        rows.append({"site": part, "kind": "analog (linear)", "operator": "-", "spiking": False, "status": "linear"})
    return pd.DataFrame(rows)
