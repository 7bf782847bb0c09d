"""Fig. 6 ablations on a converted classifier: MBE vs FS per component (6a), N vs accuracy and energy
(6b), exponential decay vs constant kernels (6c). Notebook ``07_ablation.ipynb`` runs them."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..convert import ConversionConfig, convert
from ..energy import firing_rates_by_role, neuron_energy_ratio
from ..evaluate import compare_classifiers
from ..tables import get_neuron

#: component -> the functions whose neurons it uses
COMPONENTS = {
    "activation (GELU)": ("gelu",),
    "softmax (2^x, 1/x)": ("exp2", "reciprocal"),
    "normalisation (1/sqrt)": ("rsqrt",),
    "products (identity encoders)": ("identity",),
}


def fs_neurons(functions: Sequence[str], timesteps: int = 16) -> dict:
    """Few-Spikes neurons fitted (best recipe) for each function; identity encoders get the input shift
    (their inputs are signed)."""
    from ..fitting import fit_fs_neuron

    return {fn: fit_fs_neuron(fn, timesteps=timesteps, shift=fn == "identity").neuron for fn in functions}


def _evaluate(ann, calibration, test, config: ConversionConfig, **labels) -> dict:
    snn = convert(ann, calibration, config, progress=False)
    res = compare_classifiers(ann, snn, test, progress=False)
    return {
        **labels,
        "samples": res["samples"],
        "ann_accuracy": res["ann_accuracy"],
        "snn_accuracy": res["snn_accuracy"],
        "delta_points": res["snn_accuracy"] - res["ann_accuracy"],
        "agreement": res["agreement"],
        "snn": snn,
    }


def component_ablation(ann, calibration, test, timesteps: int = 16) -> pd.DataFrame:
    """Fig. 6a: every site MBE, then one component's neurons replaced by FS neurons at a time."""
    calibration, test = list(calibration), list(test)
    fs = fs_neurons(sorted({f for fns in COMPONENTS.values() for f in fns}), timesteps)
    rows = [_evaluate(ann, calibration, test, ConversionConfig(timesteps=timesteps), component="none", neuron="MBE")]
    for comp, fns in COMPONENTS.items():
        cfg = ConversionConfig(timesteps=timesteps, neurons={f: fs[f] for f in fns})
        rows.append(_evaluate(ann, calibration, test, cfg, component=comp, neuron="FS"))
    return pd.DataFrame([{k: v for k, v in r.items() if k != "snn"} for r in rows])


def basis_sweep(
    ann, calibration, test, n_values: Sequence[int] = (1, 2, 4, 6, 8), function: str = "gelu", timesteps: int = 16
) -> pd.DataFrame:
    """Fig. 6b: the activation's N against accuracy and its neurons' energy (printed Eq. 14 accounting)."""
    calibration, test = list(calibration), list(test)
    rows = []
    for n in n_values:
        r = _evaluate(
            ann,
            calibration,
            test,
            ConversionConfig(timesteps=timesteps, n_basis={function: n}),
            function=function,
            n_basis=n,
        )
        rates = firing_rates_by_role(r.pop("snn")).set_index("role")
        eta = float(rates.loc["GELU" if function.startswith("gelu") else function, "firing_rate_pct"]) / 100
        rows.append(
            {
                **r,
                "firing_rate_pct": 100 * eta,
                "energy_vs_ann_pct": 100 * neuron_energy_ratio(eta, n_basis=n, timesteps=timesteps),
            }
        )
    return pd.DataFrame(rows)


def decay_ablation(
    ann,
    calibration,
    test,
    functions: Sequence[str] = ("gelu", "exp2", "reciprocal", "rsqrt"),
    n_basis: int = 8,
    timesteps: int = 16,
) -> pd.DataFrame:
    """Fig. 6c: the same N=8 neurons fitted with exponential decay and with constant kernels."""
    calibration, test = list(calibration), list(test)
    rows = []
    for decay in (True, False):
        neurons = {f: get_neuron(f, n_basis=n_basis, timesteps=timesteps, decay=decay) for f in functions}
        r = _evaluate(
            ann, calibration, test, ConversionConfig(timesteps=timesteps, neurons=neurons), decay=decay, n_basis=n_basis
        )
        r.pop("snn")
        rows.append(r)
    return pd.DataFrame(rows)
