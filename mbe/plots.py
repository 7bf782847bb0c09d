"""Figures for the notebooks (matplotlib/seaborn). Each function takes a DataFrame and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def plot_table_x(table: pd.DataFrame):
    """Log MSE vs basis count: a line per function, ours (each recipe) beside the paper's values."""
    sns.set_theme(style="whitegrid")
    dec = table[table.decay]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    palette = dict(zip(sorted(dec.function.unique()), sns.color_palette("tab10"), strict=False))
    styles = {"best": ("-", "o"), "paper": (":", "s")}
    for (fn, rec), grp in dec.groupby(["function", "recipe"]):
        ls, marker = styles.get(rec, ("-.", "^"))
        grp = grp.sort_values("n_basis")
        ax.plot(grp.n_basis, grp.mse, ls=ls, marker=marker, color=palette[fn], label=f"{fn} (mbe, {rec} recipe)")
    for fn, grp in dec[dec.recipe == dec.recipe.iloc[0]].groupby("function"):
        grp = grp.sort_values("n_basis")
        ax.plot(grp.n_basis, grp.paper_mse, ls="--", marker="x", color=palette[fn], alpha=0.6, label=f"{fn} (paper)")
    ax.set_yscale("log")
    ax.set_xlabel("basis count N")
    ax.set_ylabel("MSE on 10,000 evenly spread points")
    ax.set_title(f"Approximation error per nonlinearity, T={int(dec.timesteps.iloc[0])}")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    return fig


def plot_curves(curves: pd.DataFrame, functions, zoom: dict | None = None):
    """For each function: target and approximations (left), absolute error on a log scale (right)."""
    sns.set_theme(style="whitegrid")
    functions = list(functions)
    fig, axes = plt.subplots(len(functions), 2, figsize=(11, 2.8 * len(functions)), squeeze=False)
    for row, fn in enumerate(functions):
        sub = curves[curves.function == fn]
        if zoom and fn in zoom:
            lo, hi = zoom[fn]
            sub = sub[(sub.x >= lo) & (sub.x <= hi)]
        ax_f, ax_e = axes[row]
        first = sub[sub.neuron == sub.neuron.iloc[0]]
        ax_f.plot(first.x, first.target, color="black", lw=2.5, alpha=0.35, label="target")
        for label, grp in sub.groupby("neuron", sort=False):
            ax_f.plot(grp.x, grp.output, lw=1, label=label)
            ax_e.plot(grp.x, grp.error.abs().clip(lower=1e-9), lw=1, label=label)
        ax_f.set_title(f"{fn}: approximation")
        ax_e.set_title(f"{fn}: absolute error |output - target|")
        ax_e.set_yscale("log")
        ax_f.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_operator_errors(errors: pd.DataFrame, metric: str = "mean_rel"):
    """Error vs T per operator: MBE solid, FS dashed, log scale."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ops_ = list(dict.fromkeys(errors.operator))
    palette = dict(zip(ops_, sns.color_palette("tab10", len(ops_)), strict=True))
    for (op, kind), grp in errors.groupby(["operator", "neuron"], sort=False):
        grp = grp.sort_values("timesteps")
        ax.plot(
            grp.timesteps,
            grp[metric],
            ls="-" if kind == "MBE" else "--",
            marker="o" if kind == "MBE" else "x",
            color=palette[op],
            label=f"{op} ({kind})",
        )
    ax.set_yscale("log")
    ax.set_xlabel("timesteps T")
    ax.set_ylabel(
        {"mean_rel": "mean |error| / mean |exact|", "max_rel_scale": "max |error| / max |exact|"}.get(metric, metric)
    )
    ax.set_title("Spiking operators vs exact ops (solid: MBE, dashed: FS)")
    ax.legend(fontsize=6.5, ncol=2)
    fig.tight_layout()
    return fig
