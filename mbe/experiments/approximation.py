"""Function-approximation experiments behind ``notebooks/01_approximation.ipynb``.

Table X (MSE vs basis count, with and without decay), Table VII (SiLU per interval) and the
FS-vs-MBE comparison. Every number is measured here; the paper's values sit beside ours only for
comparison (:data:`mbe.paper.TABLE_X`, :data:`mbe.paper.TABLE_VII`).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd
import torch

from .. import paper
from ..fitting import evaluation_grid, fit_fs_neuron, fit_neuron, neuron_mse
from ..functions import get_function
from ..tables import get_neuron

#: where GELU and SiLU inputs actually live in trained Transformers
ACTIVE_RANGE = (-4.0, 4.0)


def _progress(items, desc: str, show: bool):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(list(items), desc=desc)


def table_x(
    functions: Sequence[str] = tuple(paper.TABLE_X),
    bases: Sequence[int] = (1, 2, 4, 6, 8),
    timesteps: int = 16,
    recipes: Sequence[str] = ("best", "paper"),
    nodecay_basis: int = 8,
    refit: bool = False,
    fit_overrides: dict | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Table X: MSE on 10,000 evenly spread points of each function's paper domain.

    Args:
        refit: fit every cell now (with ``fit_overrides``, e.g. fewer epochs for a smoke run) instead
            of loading the shipped tables. The ``source`` column says which.
    Returns:
        One row per (function, recipe, n_basis, decay) with ``mse``, ``paper_mse``, ``ratio`` (ours /
        paper) and, for GELU and SiLU, ``mse_active`` on :data:`ACTIVE_RANGE`.
    """
    cells = [(fn, rec, n, True) for fn in functions for rec in recipes for n in bases]
    if nodecay_basis:
        cells += [(fn, rec, nodecay_basis, False) for fn in functions for rec in recipes]
    rows = []
    for fn, rec, n, decay in _progress(cells, "Table X", progress):
        spec = get_function(fn)
        if refit:
            res = fit_neuron(fn, n_basis=n, timesteps=timesteps, recipe=rec, decay=decay, **(fit_overrides or {}))
            neuron, seconds = res.neuron, res.seconds
        else:
            neuron, seconds = get_neuron(fn, n_basis=n, timesteps=timesteps, recipe=rec, decay=decay), float("nan")
        published = paper.TABLE_X.get(fn, {}).get(n if decay else "nodecay", float("nan"))
        mse = neuron_mse(neuron, spec.fn)
        rows.append(
            {
                "function": fn,
                "n_basis": n,
                "timesteps": timesteps,
                "decay": decay,
                "recipe": rec,
                "domain": str(spec.domain),
                "mse": mse,
                "paper_mse": published,
                "ratio": mse / published,
                "mse_active": neuron_mse(neuron, spec.fn, ACTIVE_RANGE) if fn in ("gelu", "silu") else float("nan"),
                "source": "fitted now" if refit else "shipped table",
                "fit_seconds": seconds,
            }
        )
    return pd.DataFrame(rows)


def timestep_sweep(
    functions: Sequence[str] = ("gelu", "gelu_tanh", "silu", "tanh", "exp2", "reciprocal", "rsqrt"),
    timesteps: Sequence[int] = (8, 10, 12, 16),
) -> pd.DataFrame:
    """Shipped tables (paper N, best recipe) by T: MSE on the fitted domain and, for the activations,
    on :data:`ACTIVE_RANGE` where real inputs live."""
    rows = []
    for fn in functions:
        spec = get_function(fn)
        for t in timesteps:
            neuron = get_neuron(fn, timesteps=t)
            active = fn in ("gelu", "gelu_tanh", "silu", "tanh")
            rows.append(
                {
                    "function": fn,
                    "n_basis": spec.n_basis,
                    "timesteps": t,
                    "domain": str(spec.domain),
                    "mse": neuron_mse(neuron, spec.fn),
                    "mse_active": neuron_mse(neuron, spec.fn, ACTIVE_RANGE) if active else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def decay_ablation(table: pd.DataFrame) -> pd.DataFrame:
    """How much worse the no-decay neuron is, per function and recipe, at the no-decay N."""
    flat = table[~table.decay]
    out = []
    for _, row in flat.iterrows():
        match = table[
            (table.function == row.function)
            & (table.recipe == row.recipe)
            & (table.n_basis == row.n_basis)
            & table.decay
        ]
        if len(match):
            dec = float(match.mse.iloc[0])
            out.append(
                {
                    "function": row.function,
                    "recipe": row.recipe,
                    "n_basis": row.n_basis,
                    "mse_decay": dec,
                    "mse_no_decay": row.mse,
                    "times_worse": row.mse / dec,
                    "paper_times_worse": row.paper_mse / float(match.paper_mse.iloc[0]),
                }
            )
    return pd.DataFrame(out)


def table_vii(
    n_basis: int = 4,
    timesteps: int = 16,
    intervals: Iterable = tuple(paper.TABLE_VII),
    seed: int = 0,
    progress: bool = True,
    **fit_overrides,
) -> pd.DataFrame:
    """Table VII: SiLU fitted and measured on each of the paper's intervals (N is our choice)."""
    rows = []
    for lo, hi in _progress(intervals, "Table VII", progress):
        res = fit_neuron("silu", domain=(lo, hi), n_basis=n_basis, timesteps=timesteps, seed=seed, **fit_overrides)
        rows.append(
            {
                "function": "silu",
                "interval": f"[{lo:g}, {hi:g}]",
                "n_basis": n_basis,
                "timesteps": timesteps,
                "mse": res.mse,
                "paper_mse": paper.TABLE_VII[(lo, hi)],
                "ratio": res.mse / paper.TABLE_VII[(lo, hi)],
                "fit_seconds": res.seconds,
            }
        )
    return pd.DataFrame(rows)


def fs_vs_mbe(
    functions: Sequence[str] = ("gelu", "exp2", "reciprocal", "silu"),
    timesteps: int = 16,
    seed: int = 0,
    progress: bool = True,
    **fit_overrides,
) -> tuple[pd.DataFrame, dict]:
    """FS (binary init, 3T values) against MBE, at equal T and at (about) equal parameter count.

    Rows: ``FS paper`` (gradients only, as in the literature), ``FS best`` (our recipe's shift,
    least-squares ``d`` and bias: a fair baseline), ``MBE N=paper`` (shipped table) and ``MBE
    equal-params`` (N chosen so the MBE neuron stores no more values than FS's 3T, fitted now).
    Returns the table and the neurons (for plotting curves).
    """
    rows, neurons = [], {}
    fs_values = 3 * timesteps
    for fn in _progress(functions, "FS vs MBE", progress):
        spec = get_function(fn)
        n_eq = max(1, (fs_values - 1) // 9)
        cands = {
            "FS paper": fit_fs_neuron(fn, timesteps=timesteps, recipe="paper", seed=seed, **fit_overrides).neuron,
            "FS best": fit_fs_neuron(fn, timesteps=timesteps, recipe="best", seed=seed, **fit_overrides).neuron,
            f"MBE N={spec.n_basis}": get_neuron(fn, timesteps=timesteps),
            f"MBE N={n_eq} (equal params)": fit_neuron(
                fn, n_basis=n_eq, timesteps=timesteps, seed=seed, **fit_overrides
            ).neuron,
        }
        for label, neuron in cands.items():
            neurons[(fn, label)] = neuron
            rows.append(
                {
                    "function": fn,
                    "neuron": label,
                    "timesteps": timesteps,
                    "stored_values": neuron.num_values(),
                    "mse": neuron_mse(neuron, spec.fn),
                    "mse_active": neuron_mse(neuron, spec.fn, ACTIVE_RANGE) if fn in ("gelu", "silu") else float("nan"),
                    "mse_near_zero": _near_zero_mse(neuron, spec),
                }
            )
    return pd.DataFrame(rows), neurons


def _near_zero_mse(neuron, spec) -> float:
    """MSE on the tenth of the domain nearest 0 (where GELU, SiLU, 1/x curve sharply)."""
    lo, hi = spec.domain
    width = (hi - lo) / 10
    centre = min(max(0.0, lo + width / 2), hi - width / 2)
    return neuron_mse(neuron, spec.fn, (centre - width / 2, centre + width / 2))


@torch.no_grad()
def curves(neurons: dict, function: str, domain=None, points: int = 2000) -> pd.DataFrame:
    """Long-form curves (x, target, each neuron's output and error) for plotting."""
    spec = get_function(function)
    domain = domain or spec.domain
    x = evaluation_grid(domain, points)
    ref = spec.fn(x.double())
    frames = []
    import warnings

    for (fn, label), neuron in neurons.items():
        if fn != function:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = neuron(x).double()
        frames.append(
            pd.DataFrame(
                {
                    "x": x.double().numpy(),
                    "target": ref.numpy(),
                    "output": y.numpy(),
                    "error": (y - ref).numpy(),
                    "neuron": label,
                    "function": fn,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
