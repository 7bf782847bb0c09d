"""REPORT.md and the figures from CSVs (the committed results), without running a notebook: fast."""

import shutil
from pathlib import Path

import matplotlib
import pandas as pd

from mbe import paper, plots
from mbe.report import build_report

matplotlib.use("Agg")
RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_report_puts_the_papers_numbers_beside_the_committed_results(tmp_path):
    for csv in RESULTS.glob("*.csv"):
        shutil.copy(csv, tmp_path)
    text = build_report(tmp_path, "default").read_text()
    assert f"{paper.TABLE4_VIT_B16['ann']:.2f}" in text and f"{paper.TABLE_XI['GELU']:.2f}" in text
    for heading in ("## Table 1", "## Table 2", "## Table 3", "## Table 4"):
        assert heading in text


def test_a_missing_csv_is_named_not_invented(tmp_path):
    text = build_report(tmp_path, "default").read_text()
    assert "`table1_vision.csv` was not written" in text


def test_table_x_figure_from_the_committed_csv():
    fig = plots.plot_table_x(pd.read_csv(RESULTS / "table_x.csv"))
    assert len(fig.axes) >= 1
