r"""Spike statistics by neuron role (the paper's Table XI) and the energy estimate of Eq. 14.

.. math::

    \frac{E_{SNN}}{E_{ANN}} = \frac{\mathrm{SOPs}\cdot E_{AC}}{\mathrm{FLOPs}\cdot E_{MAC}},
    \qquad E_{AC} = 0.9\,\mathrm{pJ},\; E_{MAC} = 4.6\,\mathrm{pJ}\ (45\,\mathrm{nm})

Two accountings, both from the spikes a converted model actually fired (read from its sites' counters
after a forward pass):

- ``printed``: the paper's worked example. A neuron costs one accumulate per spike, ``T N \eta`` per
  element, and the ANN side prices its FLOPs as ``FLOPs / 2`` MACs (the only reading that reproduces the
  printed 13.7 % for GELU from 70 FLOPs, N=4, T=16, firing rate 38.22 %).
- ``counted``: every basis's every spike costs two accumulates (the readout adds ``d`` to the output, the
  membrane subtracts ``r``), products cost one accumulate per coinciding spike pair, and each ANN FLOP
  is priced as a MAC, as Eq. 14 is written.

The ANN's FLOPs per element of each nonlinear operator are conventions, listed in
:data:`FLOPS_PER_ELEMENT` (GELU's 70 is the paper's); attention's two matmuls count ``2 q k d`` FLOPs per
head. Linear layers stay analog in the converted model: they cost the same MACs on both sides and are
reported separately, so the whole-model ratio is diluted by them.
"""

from __future__ import annotations

import pandas as pd
from torch import nn

from .convert import sites as conversion_sites
from .paper import E_AC_PJ, E_MAC_PJ, GELU_EXAMPLE

#: FLOPs per element of the ANN's nonlinear operators (conventions; GELU's 70 is the paper's)
FLOPS_PER_ELEMENT = {
    "gelu": GELU_EXAMPLE["flops"],
    "gelu_tanh": GELU_EXAMPLE["flops"],
    "silu": 20,
    "tanh": 20,
    "sigmoid": 20,
    "softmax": 5,
    "norm": 8,
    "gated_product": 1,
}


def role(kind: str, key: str, neuron: str) -> str:
    """The Table XI role of one counter row: a site kind, the operator's internal key, the neuron."""
    if kind == "activation":
        return "GELU" if neuron.startswith("gelu") else neuron
    if kind == "attention":
        if key.startswith("scores."):
            return "attention score"
        if key == "softmax.exp2":
            return "2^x (softmax)"
        if key == "softmax.reciprocal":
            return "1/x (softmax)"
        if key.startswith("context."):
            return "attention context (attn x V)"
        return "softmax products"
    if kind == "norm":
        if key.endswith(".rsqrt"):
            return "1/sqrt (LayerNorm)"
        if key.endswith("product.b"):
            return "LayerNorm 1/x identity"
        if key.endswith("square.a") or key.endswith("product.a"):
            return "LayerNorm input identity"
        return "LayerNorm refinement products"
    return f"{kind} ({neuron})"


def spike_table(snn: nn.Module) -> pd.DataFrame:
    """Every counter row of every spiking site (after at least one forward), with its site, kind and role."""
    frames = []
    for name, site in conversion_sites(snn).items():
        f = site.stats.as_frame()
        if len(f):
            f = f.assign(site=name, kind=site.kind)
            f["role"] = [role(site.kind, k, n) for k, n in zip(f.key, f.function, strict=True)]
            frames.append(f)
    if not frames:
        raise ValueError("spike_table: no spikes recorded yet; run the converted model on a batch first")
    return pd.concat(frames, ignore_index=True)


def firing_rates_by_role(snn: nn.Module) -> pd.DataFrame:
    """Table XI: firing rate (%) per neuron role = spikes / (elements x N x T), summed over sites."""
    t = spike_table(snn)
    t["slots"] = t.elements * t.n_basis * t.timesteps
    g = t.groupby("role").agg(
        neuron=("function", "first"),
        n_basis=("n_basis", "first"),
        elements=("elements", "sum"),
        spikes=("spikes", "sum"),
        slots=("slots", "sum"),
    )
    g["firing_rate_pct"] = 100 * g.spikes / g.slots
    return g.reset_index().sort_values("firing_rate_pct", ascending=False, ignore_index=True)


def neuron_energy_ratio(
    firing_rate: float,
    n_basis: int = GELU_EXAMPLE["n_basis"],
    timesteps: int = GELU_EXAMPLE["timesteps"],
    flops: float = GELU_EXAMPLE["flops"],
    accounting: str = "printed",
) -> float:
    """One neuron per element against its ANN function: ``T N eta E_AC / (FLOPs/2 E_MAC)`` (``printed``)
    or ``2 T N eta E_AC / (FLOPs E_MAC)`` (``counted``). ``firing_rate`` is a fraction."""
    if not 0.0 <= firing_rate <= 1.0:
        raise ValueError(f"firing_rate must be in [0, 1] (a fraction, not a percentage), got {firing_rate!r}")
    spikes = timesteps * n_basis * firing_rate
    if accounting == "printed":
        return spikes * E_AC_PJ / (flops / 2 * E_MAC_PJ)
    if accounting == "counted":
        return 2 * spikes * E_AC_PJ / (flops * E_MAC_PJ)
    raise ValueError(f"accounting must be 'printed' or 'counted', got {accounting!r}")


def _nonlinear_flops(kind: str, function: str, rows: pd.DataFrame) -> float:
    """ANN FLOPs of a site's nonlinear part (:data:`FLOPS_PER_ELEMENT` x elements)."""
    if kind == "activation":
        return FLOPS_PER_ELEMENT.get(function, 20) * float(rows.elements.max())
    if kind == "attention":
        return FLOPS_PER_ELEMENT["softmax"] * float(rows[rows.key == "softmax.exp2"].elements.sum())
    if kind == "norm":
        return FLOPS_PER_ELEMENT["norm"] * float(rows[rows.key.str.endswith("square.a")].elements.sum())
    return 0.0


def energy_by_site(snn: nn.Module) -> pd.DataFrame:
    """Per spiking site, after a forward: ANN and SNN energy (pJ) under both accountings, and their ratio.

    Columns: ``site, kind, ann_macs, ann_nonlinear_flops, spikes_nonlinear, spikes_all, sops,
    ann_pj_printed, snn_pj_printed, ratio_printed, ann_pj_counted, snn_pj_counted, ratio_counted``.
    """
    t = spike_table(snn)
    by_name = conversion_sites(snn)
    rows = []
    for site, g in t.groupby("site", sort=False):
        kind = g.kind.iloc[0]
        macs = float(g.macs.sum())
        flops = _nonlinear_flops(kind, by_name[site].function, g)
        nonlinear = g[g.function != "identity"]
        spikes_nl, spikes_all, sops = float(nonlinear.spikes.sum()), float(g.spikes.sum()), float(g.sops.sum())
        ann_p = (macs + flops / 2) * E_MAC_PJ
        snn_p = (spikes_nl + sops) * E_AC_PJ
        ann_c = (macs + flops) * E_MAC_PJ
        snn_c = (2 * spikes_all + sops) * E_AC_PJ
        rows.append(
            {
                "site": site,
                "kind": kind,
                "ann_macs": macs,
                "ann_nonlinear_flops": flops,
                "spikes_nonlinear": spikes_nl,
                "spikes_all": spikes_all,
                "sops": sops,
                "ann_pj_printed": ann_p,
                "snn_pj_printed": snn_p,
                "ratio_printed": snn_p / ann_p if ann_p else float("nan"),
                "ann_pj_counted": ann_c,
                "snn_pj_counted": snn_c,
                "ratio_counted": snn_c / ann_c if ann_c else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def energy_summary(snn: nn.Module, linear_macs: float = 0.0) -> pd.DataFrame:
    """Energy ratios by site kind and for the whole model.

    ``linear_macs``: the analog linear layers' multiply-adds for the same forward (they cost
    ``linear_macs * E_MAC`` on both sides); :func:`linear_macs` measures them.
    """
    e = energy_by_site(snn)
    cols = ["ann_pj_printed", "snn_pj_printed", "ann_pj_counted", "snn_pj_counted"]
    by = e.groupby("kind")[cols].sum()
    by.loc["spiking sites"] = e[cols].sum()
    lin = linear_macs * E_MAC_PJ
    whole = by.loc["spiking sites"].copy()
    whole[cols] = whole[cols] + lin
    by.loc["whole model (linear layers analog)"] = whole
    by["ratio_printed"] = by.snn_pj_printed / by.ann_pj_printed
    by["ratio_counted"] = by.snn_pj_counted / by.ann_pj_counted
    return by.reset_index().rename(columns={"index": "part", "kind": "part"})


def linear_macs(ann: nn.Module, batch: dict) -> float:
    """Multiply-adds of the model's ``nn.Linear`` (and GPT-2 ``Conv1D``/patch conv) layers on ``batch``."""
    import torch

    total = 0.0

    def hook(module, inputs, output):
        nonlocal total
        w = getattr(module, "weight", None)
        if w is not None:
            fan_in = w[0].numel() if not type(module).__name__ == "Conv1D" else w.shape[0]
            total += float(output.numel()) * fan_in

    handles = [
        m.register_forward_hook(hook)
        for m in ann.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) or type(m).__name__ == "Conv1D"
    ]
    try:
        with torch.no_grad():
            ann(**batch)
    finally:
        for h in handles:
            h.remove()
    return total
