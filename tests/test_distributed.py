"""Evaluation sharded over processes gives the numbers of one process: the records of every shard, gathered,
equal one process's (fast), and `torchrun --nproc-per-node 2 -m mbe evaluate` on 2 CPU processes (gloo) writes
the same row as one process (slow). Plus the convert/evaluate CLI's errors."""

import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch

import mbe
from mbe import distributed
from mbe.evaluate import (
    classifier_records,
    language_model_records,
    lm_windows,
    summarize_classifiers,
    summarize_language_models,
)
from mbe.zoo.tiny import tiny_model


def _convert(arch):
    model, batch = tiny_model(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, mbe.convert(model, [batch], mbe.ConversionConfig(timesteps=8), progress=False)


def _merged(shards):
    return distributed.gather_records({k: torch.cat([s[k] for s in shards]) for k in shards[0]})


@pytest.mark.parametrize("world", [2, 3])
def test_classifier_shards_gathered_equal_one_process(world):
    model, snn = _convert("bert")
    gen = torch.Generator().manual_seed(0)
    batches = []
    for size in (3, 2, 4, 1, 3):  # uneven batches: global indices must still line up
        ids = torch.randint(0, 100, (size, 7), generator=gen)
        batches.append({"input_ids": ids, "labels": torch.randint(0, 2, (size,), generator=gen)})
    one = classifier_records(model, snn, batches, progress=False)
    shards = [classifier_records(model, snn, batches, progress=False, shard=(r, world)) for r in range(world)]
    assert sum(s["index"].numel() for s in shards) == one["index"].numel() == 13
    merged = _merged(shards[::-1])  # arrival order must not matter
    for key in one:
        assert torch.equal(merged[key], one[key]), key
    assert (
        summarize_classifiers(merged)
        == summarize_classifiers(one)
        == mbe.compare_classifiers(model, snn, batches, progress=False)
    )


def test_language_model_shards_gathered_equal_one_process():
    model, snn = _convert("gpt2")
    ids = torch.randint(0, 100, (61,), generator=torch.Generator().manual_seed(1))
    one = language_model_records(model, snn, ids, context=16, stride=8, progress=False)
    shards = [
        language_model_records(model, snn, ids, context=16, stride=8, progress=False, shard=(r, 2)) for r in (0, 1)
    ]
    merged = _merged(shards)
    assert torch.equal(merged["position"], torch.arange(1, 61))  # every target scored once
    for key in one:
        assert torch.equal(merged[key], one[key]), key
    assert summarize_language_models(merged, 16, 8) == mbe.compare_language_models(
        model, snn, ids, context=16, stride=8, progress=False
    )


def test_windows_and_shards_are_checked():
    assert lm_windows(10, 4, 2) == [(0, 4, 1), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        lm_windows(10, 4, 0)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm_windows(1, 4, 2)
    model, _ = tiny_model("gpt2")
    with pytest.raises(ValueError, match="shard must be"):
        language_model_records(model, model, torch.arange(10), 4, 2, progress=False, shard=(2, 2))
    with pytest.raises(ValueError, match="order keys"):
        distributed.gather_records({"x": torch.zeros(2)})


def _cli(*args, env=None, timeout=600):
    env = {**os.environ, "MBE_COMPILE": "0", "MBE_QUICK_FITS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_cli_errors_name_the_problem(tmp_path):
    out = _cli("-m", "mbe", "evaluate", "no-such-model", "--quiet")
    assert out.returncode == 2 and "unknown model 'no-such-model'" in out.stderr
    out = _cli("-m", "mbe", "evaluate", "vit-mnist", "--conversion", str(tmp_path / "none"), "--quiet")
    assert out.returncode == 2 and "mbe_conversion.json is missing" in out.stderr
    out = _cli("-m", "mbe", "convert", "vit-mnist", "--models", str(tmp_path), "--out", str(tmp_path / "c"))
    assert out.returncode == 2 and "embedded zoo model" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, limit",
    [("vit-mnist", ["--limit", "32", "--batch-size", "8"]), ("gpt2-pydocs", ["--limit", "400", "--context", "64"])],
)
def test_two_processes_evaluate_exactly_like_one(tmp_path, model, limit):
    """`python -m mbe convert`, then `mbe evaluate --conversion` alone and under torchrun with 2 gloo processes."""
    conv = tmp_path / "conv"
    out = _cli("-m", "mbe", "convert", model, "--timesteps", "16", "--calibration", "16", "--out", str(conv), "--quiet")
    assert out.returncode == 0, out.stderr
    common = ["mbe", "evaluate", model, "--conversion", str(conv), "--timesteps", "8", "16", *limit, "--quiet"]
    one = _cli("-m", *common, "--out", str(tmp_path / "one.csv"))
    assert one.returncode == 0, one.stderr
    two = _cli(
        "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", *common, "--out", str(tmp_path / "two.csv")
    )
    assert two.returncode == 0, two.stderr
    a, b = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert list(a.processes) == [1, 1] and list(b.processes) == [2, 2]
    assert list(a.timesteps) == [8, 16]
    pd.testing.assert_frame_equal(a.drop(columns=["processes", "seconds"]), b.drop(columns=["processes", "seconds"]))
