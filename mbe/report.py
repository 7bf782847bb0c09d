"""``results/REPORT.md``: every number of the paper's Tables 1-4, VII, X and XI beside ours.

Built by ``python -m mbe reproduce`` after the notebooks ran, from the CSVs they wrote (nothing here is
typed in by hand; the paper's own numbers come from :mod:`mbe.paper`). Where ours cannot exist offline (ImageNet, WikiText, SST-2, the paper's checkpoints) the row says
so and names the stand-in measured instead.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import pandas as pd

from . import paper


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.2g}" if (v != 0 and abs(v) < 0.1) or abs(v) >= 1e5 else f"{v:.2f}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out + [""]


def _read(results: Path, name: str) -> pd.DataFrame | None:
    path = results / name
    return pd.read_csv(path) if path.is_file() else None


def _missing(name: str) -> list[str]:
    return [f"_`{name}` was not written in this results folder: run its notebook (python -m mbe reproduce)._", ""]


def _classifier_rows(sweep: pd.DataFrame, t: int) -> list[pd.Series]:
    return [r for _, r in sweep[sweep.timesteps == t].iterrows()]


FIXTURE_LABEL = "FIXTURE, not a result"


def _is_hub(model: str) -> bool:
    from .zoo import hub

    return model in hub.HUB


def _who(model: str, fixture: bool) -> str:
    """How a row names its model: a paper hub model by name, marked when it ran on the test fixture
    (:mod:`mbe.zoo.fixtures`: tiny random models, synthetic data); an embedded model as the stand-in it is."""
    if not _is_hub(model):
        return f"stand-in: {model}"
    return f"{FIXTURE_LABEL}: {model} (tiny random model, synthetic data)" if fixture else f"paper model: {model}"


def _what(model: str, embedded: str, hub_unit: str, fixture: bool) -> str:
    """The unit of a row's sample count."""
    if not _is_hub(model):
        return embedded
    return f"fixture {hub_unit}" if fixture else hub_unit


#: Table 1's rows -> the hub model (:data:`mbe.zoo.hub.HUB`) that reproduces it, whose rows follow that row
TABLE1_MODELS = {"ViT-B/16 ImageNet": "vit-b16-imagenet", "ViT-M/16 ImageNet": "vit-m16-imagenet"}


def _table1(results: Path, fixture: frozenset = frozenset()) -> list[str]:
    lines = ["## Table 1 (vision, top-1 %, T=16)", ""]
    fx = "table1_vision.csv" in fixture
    sweep = _read(results, "table1_vision.csv")
    if sweep is None:
        return lines + _missing("table1_vision.csv")
    rows = [
        [
            "ViT-B/16 ImageNet",
            paper.TABLE4_VIT_B16["ann"],
            paper.TABLE4_VIT_B16[16],
            paper.TABLE4_VIT_B16[16] - paper.TABLE4_VIT_B16["ann"],
            "-",
            "-",
            "-",
            "no ImageNet or ViT-B weights offline; stand-in below",
        ]
    ]

    def ours(models: pd.Series) -> list[list]:
        return [
            [
                f"{_who(r.model, fx)} ({_config_label(r)})",
                "-",
                "-",
                "-",
                r.ann_accuracy,
                r.snn_accuracy,
                r.delta_points,
                _sample_note(r, _what(r.model, "MNIST test digits", "validation images", fx)),
            ]
            for r in _classifier_rows(sweep[models], 16)
        ]

    # the paper's own models sit under their paper rows; the embedded ViTs under ViT-B/16's
    elsewhere = sweep.model.isin([m for k, m in TABLE1_MODELS.items() if k != "ViT-B/16 ImageNet"])
    rows += ours(~sweep.model.str.contains("resnet") & ~elsewhere)
    for name, (a, s) in ((k, v) for k, v in paper.TABLE1.items() if k != "ViT-B/16 ImageNet"):
        mine = sweep.model == TABLE1_MODELS.get(name)
        note = "no ImageNet or timm weights offline" + ("; CNN stand-in below" if "T=10" in name else "")
        rows.append([name, a, s, s - a, "-", "-", "-", "ours below" if mine.any() else note])
        rows += ours(mine)
    for r in _classifier_rows(sweep[sweep.model.str.contains("resnet")], 10):
        rows.append(
            [
                f"stand-in for the CNN rows: {r.model} at T=10 ({_config_label(r)})",
                "-",
                "-",
                "-",
                r.ann_accuracy,
                r.snn_accuracy,
                r.delta_points,
                _sample_note(r, "MNIST test digits"),
            ]
        )
    return lines + _table(
        [
            "model",
            "paper ANN",
            "paper SNN",
            "paper delta",
            "ours ANN",
            "ours SNN",
            "ours delta",
            "ours: samples / note",
        ],
        rows,
    )


def _table2(results: Path, fixture: frozenset = frozenset()) -> list[str]:
    lines = ["## Table 2 (NLU, accuracy %, T=16)", ""]
    fx = "table2_nlu.csv" in fixture
    sweep = _read(results, "table2_nlu.csv")
    rows = [
        [f"RoBERTa-base {t}", a, s, s - a, "-", "-", "-", "no GLUE/SST/MR/Subj data or fine-tuned checkpoints offline"]
        for t, (a, s) in paper.TABLE2_ROBERTA_BASE.items()
    ]
    rows += [
        [f"RoBERTa-large {t}", a, s, s - a, "-", "-", "-", "as above"]
        for t, (a, s) in paper.TABLE2_ROBERTA_LARGE.items()
    ]
    if sweep is None:
        return (
            lines
            + _table(
                ["model / task", "paper ANN", "paper SNN", "paper delta", "ours ANN", "ours SNN", "ours delta", "note"],
                rows,
            )
            + _missing("table2_nlu.csv")
        )
    for r in _classifier_rows(sweep, 16):
        rows.append(
            [
                f"{_who(r.model, fx)}{'' if _is_hub(r.model) else ', tweet sentiment'} ({_config_label(r)})",
                "-",
                "-",
                "-",
                r.ann_accuracy,
                r.snn_accuracy,
                r.delta_points,
                _sample_note(r, _what(r.model, "held-out tweets", "validation sentences", fx)),
            ]
        )
    return lines + _table(
        [
            "model / task",
            "paper ANN",
            "paper SNN",
            "paper delta",
            "ours ANN",
            "ours SNN",
            "ours delta",
            "ours: samples / note",
        ],
        rows,
    )


def _table3(results: Path, fixture: frozenset = frozenset()) -> list[str]:
    lines = ["## Table 3 (NLG, perplexity, T=16)", ""]
    fx = "table3_nlg.csv" in fixture
    sweep = _read(results, "table3_nlg.csv")
    rows = [
        [f"GPT-2 (346M) {d}", a, s, 100 * (s / a - 1), "-", "-", "-", "no GPT-2 weights or WikiText offline"]
        for d, (a, s) in paper.TABLE3_GPT2.items()
    ]
    if sweep is not None:
        for _, r in sweep[sweep.timesteps == 16].iterrows():
            rows.append(
                [
                    f"{_who(r.model, fx)} ({_config_label(r)})",
                    "-",
                    "-",
                    "-",
                    r.ann_ppl,
                    r.snn_ppl,
                    r.ppl_increase_pct,
                    _token_note(r, fx and _is_hub(r.model)),
                ]
            )
    out = lines + _table(
        [
            "model / data",
            "paper ANN",
            "paper SNN",
            "paper increase %",
            "ours ANN",
            "ours SNN",
            "ours increase %",
            "ours: tokens / note",
        ],
        rows,
    )
    return out if sweep is not None else out + _missing("table3_nlg.csv")


def _table4(results: Path, fixture: frozenset = frozenset()) -> list[str]:
    lines = [
        "## Table 4 (timestep sweep: SNN metric by T, ANN in the first column)",
        "",
        "Paper rows, then ours (stand-ins; the default configuration where several were run). Accuracy in %, "
        "perplexity for the language models.",
        "",
    ]
    ts = [8, 10, 12, 16]
    rows = []
    for name, published in [
        ("paper ViT-B/16 ImageNet", paper.TABLE4_VIT_B16),
        ("paper RoBERTa-B MR", paper.TABLE4_ROBERTA_BASE_MR),
        ("paper GPT-2 WikiText-103 (ppl)", paper.TABLE4_GPT2_WIKI103),
    ] + [("paper ViT-M/16", paper.TABLE4_VIT_M16), ("paper RoBERTa-L MR", paper.TABLE4_ROBERTA_LARGE_MR)]:
        rows.append([name, published["ann"], *[published.get(t) for t in ts], "-"])
    for csv, metric_ann, metric_snn, unit, hub_unit in [
        ("table1_vision.csv", "ann_accuracy", "snn_accuracy", "digits", "images"),
        ("table2_nlu.csv", "ann_accuracy", "snn_accuracy", "tweets", "sentences"),
        ("table3_nlg.csv", "ann_ppl", "snn_ppl", "tokens", "tokens"),
    ]:
        sweep = _read(results, csv)
        if sweep is None:
            continue
        for model, grp in sweep.groupby("model", sort=False):
            col = "config" if "config" in grp else "activation_domain"
            best = "default" if col == "config" else "calibrated"
            dom = best if (grp[col] == best).any() else grp[col].iloc[0]
            g = grp[grp[col] == dom].set_index("timesteps")
            n = int(g["samples" if "samples" in g else "tokens"].iloc[0])
            rows.append(
                [
                    f"ours {model} ({dom})" if not _is_hub(model) else f"{_who(model, csv in fixture)} ({dom})",
                    float(g[metric_ann].iloc[0]),
                    *[float(g.loc[t, metric_snn]) if t in g.index else None for t in ts],
                    f"{n} {_what(model, unit, hub_unit, csv in fixture)}",
                ]
            )
    return lines + _table(["model", "ANN", "T=8", "T=10", "T=12", "T=16", "samples"], rows)


def _table_x(results: Path) -> list[str]:
    lines = ["## Table X (fitting MSE at T=16 by N) and Table VII (SiLU)", ""]
    tx = _read(results, "table_x.csv")
    if tx is None:
        return lines + _missing("table_x.csv")
    rows = []
    for _, r in tx.sort_values(["function", "decay", "n_basis"], ascending=[True, False, True]).iterrows():
        if r.recipe != "best":
            continue
        paper_recipe = tx[
            (tx.function == r.function) & (tx.n_basis == r.n_basis) & (tx.decay == r.decay) & (tx.recipe == "paper")
        ]
        rows.append(
            [
                r.function,
                int(r.n_basis),
                "yes" if r.decay else "no",
                r.paper_mse,
                r.mse,
                r.mse - r.paper_mse,
                r.ratio,
                float(paper_recipe.mse.iloc[0]) if len(paper_recipe) else None,
            ]
        )
    out = lines + _table(
        ["function", "N", "decay", "paper MSE", "ours (best)", "difference", "ours / paper", "ours (paper recipe)"],
        rows,
    )
    vii = _read(results, "table_vii.csv")
    if vii is not None:
        out += _table(
            ["SiLU interval (N=4, T=16)", "paper MSE", "ours", "difference", "ours / paper"],
            [[r.interval, r.paper_mse, r.mse, r.mse - r.paper_mse, r.ratio] for _, r in vii.iterrows()],
        )
    return out


def _table_xi(results: Path) -> list[str]:
    lines = ["## Table XI (firing rates %, T=16)", ""]
    xi = _read(results, "table_xi.csv")
    if xi is None:
        rows = [
            [role, p, "-", "-", "not measured in this results folder (notebook 08_energy writes table_xi.csv)"]
            for role, p in paper.TABLE_XI.items()
        ]
        return lines + _table(["neuron role", "paper (ViT-M/16)", "ours", "difference", "note"], rows)
    xi = xi.set_index("role")
    rows = [
        [
            role,
            p,
            float(xi.loc[role, "firing_rate_pct"]) if role in xi.index else None,
            float(xi.loc[role, "firing_rate_pct"]) - p if role in xi.index else None,
            xi.loc[role, "model"] if role in xi.index else "role not present in the stand-in",
        ]
        for role, p in paper.TABLE_XI.items()
    ]
    return lines + _table(["neuron role", "paper (ViT-M/16)", "ours", "difference", "ours: model"], rows)


def build_report(results_dir, profile: str, runs: pd.DataFrame | None = None) -> Path:
    """Write ``<results_dir>/REPORT.md`` from the CSVs there; ``runs`` holds (notebook, seconds[, fixture]) rows.

    Notebooks whose ``fixture`` is true ran the paper profile on the test fixture (:mod:`mbe.zoo.fixtures`): the
    header says so and their paper-model rows are marked ``FIXTURE, not a result``."""
    import torch
    import transformers

    from . import __version__

    results = Path(results_dir)
    lines = [
        "# Report: the paper's tables beside ours",
        "",
        f"Written by `python -m mbe reproduce --profile {profile}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"mbe {__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"python {platform.python_version()}, {platform.machine()}, {torch.get_num_threads()} threads.",
        "",
        "The paper's models and data (ImageNet, GLUE, WikiText, GPT-2/ViT/RoBERTa checkpoints) cannot be had "
        "offline; each table names the embedded stand-in measured instead, with its sample count"
        + (
            " (the paper profile's notebooks 03-05 run the paper's models, from the hub or local copies: their "
            "rows name them as `paper model: <name>`)"
            if profile == "paper"
            else ""
        )
        + ". Differences are ours minus the paper's (points for accuracy, relative % for perplexity).",
        "",
    ]
    fixture_books = []
    if runs is not None and "fixture" in runs:
        fixture_books = sorted(runs.notebook[runs.fixture.astype("boolean").fillna(False).astype(bool)])
    # a notebook writes the CSV its name ends with (03_table1_vision.ipynb -> table1_vision.csv)
    fixture = frozenset(b.split("_", 1)[1].removesuffix(".ipynb") + ".csv" for b in fixture_books if "_" in b)
    if fixture_books:
        lines += [
            f"**{FIXTURE_LABEL}.** {', '.join(f'`{b}`' for b in fixture_books)} ran the paper profile on the "
            "test fixture (`mbe.zoo.fixtures`: tiny random models of the paper models' architectures and a few "
            f"synthetic samples, read as local copies). Their rows are marked `{FIXTURE_LABEL}`: they test the "
            "wiring and say nothing about the paper's models or about conversion quality.",
            "",
        ]
    if runs is not None and len(runs):
        lines += [
            "Notebook wall times (s): "
            + ", ".join(f"{r.notebook} {r.seconds:.0f}" for _, r in runs.iterrows())
            + f"; total {runs.seconds.sum():.0f} s.",
            "",
        ]
    for part in (_table1, _table2, _table3, _table4):
        lines += part(results, fixture)
    for part in (_table_x, _table_xi, _error_budget):
        lines += part(results)
    path = results / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def _error_budget(results: Path) -> list[str]:
    """Where each zoo model's error comes from (notebook 09): every site spiking, and one kind at a time."""
    lines = [
        "## Error budget (not in the paper)",
        "",
        "`mbe.error_budget` per zoo model (notebook 09): the change against the ANN with every site spiking "
        "(`all`) and with one site kind spiking at a time, under the default configuration and the paper's "
        "setup (`paper` preset). Accuracy in points, perplexity in percent; `samples` held-out items or scored "
        "tokens. Per-layer and cumulative rows: `results/error_budget.csv`; figure: "
        "`figures/error_budget.png`.",
        "",
    ]
    budget = _read(results, "error_budget.csv")
    if budget is None:
        return lines + _missing("error_budget.csv")
    rows = []
    sub = budget[budget.scope.isin(["all", "kind"])]
    for (model, config, t), grp in sub.groupby(["model", "config", "timesteps"], sort=False):
        g = grp.set_index("part")
        rows.append(
            [
                model,
                config,
                int(t),
                g.metric.iloc[0],
                float(g.loc["all", "change"]),
                *[
                    float(g.loc[k, "change"]) if k in g.index else None
                    for k in ("attention", "norm", "activation", "gated_product", "pool")
                ],
                float(g.loc["all", "agreement"]),
                int(g.samples.iloc[0]),
            ]
        )
    header = [
        "model",
        "config",
        "T",
        "metric",
        "all",
        "attention",
        "norm",
        "activation",
        "gated product",
        "pool",
        "agreement %",
        "samples",
    ]
    return lines + _table(header, rows) + ["![error budget](../figures/error_budget.png)", ""]


def _interval(row, low: str, high: str, unit: str) -> str:
    """``"[lo, hi] unit"`` from a sweep row's 95% interval columns, or ``""`` for results written before them."""
    if low not in row or high not in row or pd.isna(row[low]) or pd.isna(row[high]):
        return ""
    return f"[{row[low]:.2f}, {row[high]:.2f}]{unit}"


def _agreement_note(row) -> str:
    """``"; agreement X% [lo, hi]%"`` of a sweep row (the interval only where the row has one)."""
    return f"; agreement {row.agreement:.1f}% {_interval(row, 'agreement_ci_low', 'agreement_ci_high', '%')}".rstrip()


def _sample_note(row, what: str) -> str:
    """Sample size, the paired accuracy change's 95% interval and the prediction agreement of a classifier row."""
    note = f"{int(row.samples)} {what}"
    delta = _interval(row, "delta_ci_low", "delta_ci_high", " points")
    if delta:
        note += f"; delta 95% CI {delta}"
    return note + (_agreement_note(row) if "agreement" in row else "")


def _token_note(row, fixture: bool = False) -> str:
    """Token count, window, the perplexity change's 95% interval and next-token agreement of a language-model row."""
    held_out = "fixture" if fixture else "held-out"
    note = f"{int(row.tokens)} {held_out} tokens, context {int(row.context)}, stride {int(row.stride)}"
    increase = _interval(row, "ppl_increase_ci_low", "ppl_increase_ci_high", " %")
    if increase:
        note += f"; increase 95% CI {increase}"
    return note + _agreement_note(row)


def _config_label(row) -> str:
    """How a sweep row names its configuration: the preset (``default``: the best measured, ``paper``: the
    paper's setup) with its activation domain, or the activation domain alone (older CSVs)."""
    config = getattr(row, "config", None)
    if isinstance(config, str):
        return f"{config} config, {row.activation_domain} activations"
    return f"{row.activation_domain} activations"
