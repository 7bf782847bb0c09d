"""The notebook suite in its smoke profile, run by papermill through the CLI, and its CSVs checked."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbe",
            "reproduce",
            "--profile",
            "smoke",
            "--results",
            str(out / "results"),
            "--figures",
            str(out / "figures"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        # a wiring test, run as the fast tier runs: the density-weighted neurons the default config fits per model
        # and T use the short schedule (one restart; cached apart from full fits); the neurons run their eager path
        # through the MBE_COMPILE=0 that tests/conftest.py sets (each notebook's kernel would otherwise trace and
        # compile every neuron shape anew: 7-9 minutes for notebooks 00 and 02 alone on a 2-core machine)
        env={**os.environ, "MBE_QUICK_FITS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_approximation_notebook_writes_table_x(smoke_run):
    df = pd.read_csv(smoke_run / "results" / "table_x.csv")
    required = {"function", "n_basis", "timesteps", "decay", "recipe", "mse", "paper_mse", "ratio"}
    assert required <= set(df.columns)
    assert len(df) == 4 * 2 * 6  # 4 functions x 2 recipes x (5 N values + no-decay)
    assert all(math.isfinite(v) and v >= 0 for v in df.mse)
    best = df[(df.recipe == "best") & df.decay]
    assert (best.ratio <= 1).all(), best[best.ratio > 1]
    for fn, grp in best.groupby("function"):  # more bases never much worse than one
        assert grp[grp.n_basis == 8].mse.iloc[0] < grp[grp.n_basis == 1].mse.iloc[0], fn


def test_approximation_notebook_writes_other_tables_and_figures(smoke_run):
    vii = pd.read_csv(smoke_run / "results" / "table_vii.csv")
    assert len(vii) == 3 and vii.mse.map(math.isfinite).all()
    fs = pd.read_csv(smoke_run / "results" / "fs_vs_mbe.csv")
    assert {"function", "neuron", "stored_values", "mse", "mse_near_zero"} <= set(fs.columns)
    assert len(fs) == 16
    abl = pd.read_csv(smoke_run / "results" / "decay_ablation.csv")
    assert (abl[abl.recipe == "best"].times_worse > 1).all()
    for name in ("table_x_mse_vs_n.png", "fs_vs_mbe_curves.png"):
        assert (smoke_run / "figures" / name).stat().st_size > 10_000
    assert (smoke_run / "results" / "executed" / "01_approximation.ipynb").exists()


def test_source_notebooks_carry_no_outputs():
    import json

    for path in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and not cell.get("execution_count"), path.name
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), path.name


def test_operators_notebook_csvs(smoke_run):
    res = smoke_run / "results"
    err = pd.read_csv(res / "operator_errors.csv")
    assert {
        "operator",
        "neuron",
        "timesteps",
        "max_abs",
        "mean_abs",
        "max_rel_scale",
        "mean_rel",
        "spikes",
        "sops",
        "clamped",
    } <= set(err.columns)
    assert err[["max_abs", "mean_abs", "mean_rel"]].map(math.isfinite).all().all()
    mbe_err = err[err.neuron == "MBE"].pivot_table(index="operator", columns="timesteps", values="mean_rel")
    for op in ("QK^T (matmul)", "attn V (matmul)", "softmax", "layer_norm", "rms_norm", "product (elementwise)"):
        assert mbe_err.loc[op, 16] < mbe_err.loc[op, 8], op  # error falls as T grows
    agree = pd.read_csv(res / "event_vs_fused.csv")
    assert (agree.max_diff_over_scale <= 1e-5).all() and (agree.sops_fused == agree.sops_event).all()
    sums = pd.read_csv(res / "softmax_row_sums.csv")
    assert float(sums[(sums.timesteps == 16) & (sums.refine == 1)].max_row_sum_error.iloc[0]) < 1e-3
    spikes = pd.read_csv(res / "operator_spike_stats.csv")
    assert ((spikes.firing_rate > 0) & (spikes.firing_rate <= 1)).all()
    assert (smoke_run / "figures" / "operator_error_vs_t.png").stat().st_size > 10_000


def test_vision_notebook_csv(smoke_run):
    sweep = pd.read_csv(smoke_run / "results" / "table1_vision.csv")
    assert {
        "model",
        "activation_domain",
        "timesteps",
        "samples",
        "ann_accuracy",
        "snn_accuracy",
        "agreement",
        "delta_points",
    } <= set(sweep.columns)
    assert (sweep.samples == 100).all() and (sweep.ann_accuracy > 90).all()  # the ANN is sane
    assert set(sweep.model) == {"vit-mnist", "resnet-mnist"}
    assert (sweep.agreement >= 90).all()
    report = pd.read_csv(smoke_run / "results" / "table1_vision_report.csv")
    assert {"attention", "norm", "activation"} <= set(report.kind)
    assert (smoke_run / "figures" / "table1_vision_delta_vs_t.png").stat().st_size > 10_000


def test_nlu_notebook_csv(smoke_run):
    sweep = pd.read_csv(smoke_run / "results" / "table2_nlu.csv")
    assert {"activation_domain", "timesteps", "samples", "ann_accuracy", "snn_accuracy", "agreement"} <= set(
        sweep.columns
    )
    assert (sweep.samples == 8).all() and sweep.agreement.map(math.isfinite).all()
    assert set(sweep.model) == {"minilm-tweets", "roberta-tweets"}
    assert (smoke_run / "figures" / "table2_nlu_delta_vs_t.png").stat().st_size > 10_000


def test_nlg_notebook_csv(smoke_run):
    sweep = pd.read_csv(smoke_run / "results" / "table3_nlg.csv")
    assert {
        "model",
        "activation_domain",
        "timesteps",
        "tokens",
        "context",
        "stride",
        "ann_ppl",
        "snn_ppl",
        "ppl_increase_pct",
        "agreement",
        "kl",
    } <= set(sweep.columns)
    assert (sweep.model == "gpt2-pydocs").all() and (sweep.tokens == 255).all()
    assert (sweep.ann_ppl > 1).all() and (sweep.ann_ppl < 1000).all()  # a real LM, better than uniform over 4,096
    assert sweep[["snn_ppl", "kl"]].map(math.isfinite).all().all()
    report = pd.read_csv(smoke_run / "results" / "table3_nlg_report.csv")
    assert {"attention", "norm", "activation"} <= set(report.kind)
    assert (smoke_run / "figures" / "table3_nlg_ppl_vs_t.png").stat().st_size > 10_000


def test_timesteps_notebook_csv(smoke_run):
    sweep = pd.read_csv(smoke_run / "results" / "table4_timesteps.csv")
    assert {"model", "activation_domain", "timesteps", "unit", "loss"} <= set(sweep.columns)
    assert {"vit-mnist", "minilm-tweets", "roberta-tweets", "gpt2-pydocs"} <= set(sweep.model)
    assert 4 in set(sweep[sweep.model == "roberta-tweets"].timesteps)  # extended below T=8
    assert sweep.loss.map(math.isfinite).all()
    assert (smoke_run / "figures" / "table4_timesteps.png").stat().st_size > 10_000


def test_ablation_notebook_csvs(smoke_run):
    res = smoke_run / "results"
    comp = pd.read_csv(res / "ablation_components.csv")
    assert len(comp) == 5 and set(comp.neuron) == {"MBE", "FS"} and (comp.samples == 50).all()
    mbe_row = comp[comp.neuron == "MBE"].iloc[0]
    assert mbe_row.snn_accuracy > 85  # the all-MBE twin is sane
    bases = pd.read_csv(res / "ablation_basis.csv")
    assert list(bases.n_basis) == [1, 4] and (bases.energy_vs_ann_pct > 0).all()
    decay = pd.read_csv(res / "ablation_decay.csv")
    assert set(decay.decay) == {True, False}
    assert (smoke_run / "figures" / "ablation.png").stat().st_size > 10_000


def test_energy_notebook_csvs_and_report(smoke_run):
    res = smoke_run / "results"
    xi = pd.read_csv(res / "table_xi.csv")
    measured = xi.dropna(subset=["firing_rate_pct"])
    assert ((measured.firing_rate_pct > 0) & (measured.firing_rate_pct < 100)).all()
    assert {"GELU", "2^x (softmax)", "1/x (softmax)", "1/sqrt (LayerNorm)"} <= set(measured.role)
    summary = pd.read_csv(res / "energy_summary.csv")
    assert {"part", "ratio_printed", "ratio_counted", "model"} <= set(summary.columns)
    assert (summary.ratio_printed > 0).all()
    report = (res / "REPORT.md").read_text()
    for table in ("Table 1", "Table 2", "Table 3", "Table 4", "Table X", "Table XI"):
        assert f"## {table}" in report
    assert "not written in this results folder" not in report  # every notebook wrote its CSV


def test_paper_profile_offline_says_what_is_unreachable(tmp_path):
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbe",
            "reproduce",
            "--profile",
            "paper",
            "--results",
            str(tmp_path / "r"),
            "--figures",
            str(tmp_path / "f"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    for model_id in ("google/vit-base-patch16-224", "textattack/roberta-base-SST-2", "gpt2-medium"):
        assert model_id in proc.stderr
    assert "--profile default" in proc.stderr
    assert not (tmp_path / "r" / "executed").exists()  # nothing ran, nothing half-written


def test_tutorial_runs_headless(smoke_run):
    assert (smoke_run / "results" / "executed" / "00_tutorial.ipynb").exists()
    for name in ("tutorial_membrane.png", "tutorial_fs_vs_mbe.png"):
        assert (smoke_run / "figures" / name).stat().st_size > 10_000


def test_error_budget_notebook_csv_and_report(smoke_run):
    budget = pd.read_csv(smoke_run / "results" / "error_budget.csv")
    assert {"model", "config", "timesteps", "scope", "part", "sites", "metric", "change", "rel_logit_error"} <= set(
        budget.columns
    )
    assert set(budget.model) == {"gpt2-pydocs"} and (budget.metric == "perplexity").all()
    rows = budget.set_index("part")
    assert abs(rows.loc["none", "change"]) < 0.01  # nothing spiking: the ANN
    assert {"attention", "norm", "activation"} <= set(budget[budget.scope == "kind"].part)
    assert "## Error budget" in (smoke_run / "results" / "REPORT.md").read_text()
    assert (smoke_run / "figures" / "error_budget.png").stat().st_size > 10_000
