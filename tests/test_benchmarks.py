"""The benchmark harness: one spawned process per measurement, ratios against same-run baselines.

Only the structure is asserted (speed is measured by ``python -m mbe bench``, never by a timed test)."""

import math
import warnings

import pandas as pd
import pytest
import torch

from mbe.benchmarks import COLUMNS, run_suites, write_report
from mbe.benchmarks.measure import _measure


def test_one_measurement_in_process_and_a_report(tmp_path):
    """The child's side of a measurement (build, warm up, peak, median) run here on one eager case."""
    with torch.no_grad(), warnings.catch_warnings():  # the child's global settings stay inside this block
        seconds, peak_mb, elements, op_calls = _measure(("neuron", "gelu", "eager", 4, 1))
    assert torch.is_grad_enabled()
    assert seconds > 0 and peak_mb >= 0 and elements == 8 * 197 * 3072
    assert op_calls > 3 * 4  # at least three ops per step
    frame = pd.DataFrame(
        [dict.fromkeys(COLUMNS, 1.0) | {"benchmark": "neuron", "model": "gelu (N=4)", "mode": "eager"}]
    )
    csv, md = write_report(frame, tmp_path)
    assert csv.read_text().splitlines()[0] == ",".join(COLUMNS) and "## neuron" in md.read_text()


@pytest.mark.slow
def test_neuron_suite_rows_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("MBE_COMPILE", "1")  # the spawned measurements inherit it: the compiled and table paths
    # one neuron of the three: every path and the report's layout (each case is a spawned process)
    frame = run_suites(("neuron",), timesteps=(8,), repeats=1, progress=False, only=("gelu",))
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 5 and set(frame["mode"]) == {"eager", "compiled", "table", "copy", "roofline"}
    for col in ("baseline_seconds", "seconds", "time_ratio", "elements_per_second"):
        assert frame[col].map(lambda v: math.isfinite(v) and v > 0).all(), col
    assert (frame.peak_mb >= 0).all() and (frame.timesteps == 8).all()
    csv, md = write_report(frame, tmp_path)
    assert csv.read_text().splitlines()[0] == ",".join(COLUMNS)
    text = md.read_text()
    assert "## neuron" in text and "torch" in text and text.count("| gelu (N=4) |") == 5
    assert (frame.op_calls > 0).all() and (frame.baseline_op_calls > 0).all()
    calls = frame.set_index(["model", "mode"]).op_calls
    assert (calls.xs("compiled", level="mode") < calls.xs("eager", level="mode")).all()  # one fused launch


def test_bench_only_keeps_matching_cases_and_names_the_labels_otherwise(capsys):
    from mbe.cli import main

    assert main(["bench", "--suites", "models", "--only", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "matches no case" in err and "vit-mnist (100 digits)" in err


def test_bench_report_names_the_command_that_reruns_it():
    from mbe.cli import _bench_command, build_parser

    args = build_parser().parse_args(
        ["bench", "--suites", "neuron", "--timesteps", "8", "--only", "gelu", "--name", "x"]
    )
    command = _bench_command(args)
    assert command == (
        "python -m mbe bench --suites neuron --timesteps 8 --event-timesteps 16 --only gelu --repeats 5 --name x "
        "--out results"
    )
    assert build_parser().parse_args(command.split()[3:]) == args  # the same options, read back
