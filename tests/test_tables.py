"""Shipped tables: present, hashed, fresh; clear errors when missing, stale or corrupt."""

import json
import shutil
import subprocess
import sys
import time

import pytest
import torch

import mbe
from mbe.paper import TABLE_X as PAPER_TABLE_X
from mbe.tables import SHIPPED_DIR, TableError, TableKey, load_table, shipped_table_keys, verify_tables


def test_every_shipped_table_loads_and_verifies():
    results = verify_tables()
    bad = [(name, msg) for name, msg in results if msg != "ok"]
    assert not bad, bad
    assert len(results) == len(shipped_table_keys()) >= 70


def test_get_neuron_is_fast_and_needs_no_refit():
    mbe.get_neuron("gelu", n_basis=4, timesteps=16)  # warm the file cache
    start = time.perf_counter()
    for _ in range(10):
        neuron = mbe.get_neuron("gelu", n_basis=4, timesteps=16)
    per_call = (time.perf_counter() - start) / 10
    assert per_call < 0.05, f"get_neuron took {per_call * 1e3:.1f} ms"  # generous: ms, not a refit
    assert neuron.n_basis == 4 and neuron.timesteps == 16 and neuron.domain == (-120.0, 10.0)


@pytest.mark.parametrize("fn", sorted(PAPER_TABLE_X))
def test_table_x_cells_at_or_below_paper(fn):
    """Done-when of the neuron core: every Table X cell at T=16 (best recipe) <= the paper's MSE,
    re-measured here on 10,000 evenly spread points of the paper's domain."""
    spec = mbe.get_function(fn)
    for n in (1, 2, 4, 6, 8):
        mse = mbe.neuron_mse(mbe.get_neuron(fn, n_basis=n, timesteps=16), spec.fn)
        assert mse <= PAPER_TABLE_X[fn][n], (fn, n, mse)
    flat = mbe.neuron_mse(mbe.get_neuron(fn, n_basis=8, timesteps=16, decay=False), spec.fn)
    assert flat <= PAPER_TABLE_X[fn]["nodecay"], (fn, flat)


def test_stored_mse_matches_a_fresh_measurement():
    record = load_table(TableKey("rsqrt", 8, 16))
    neuron = mbe.get_neuron("rsqrt", n_basis=8, timesteps=16)
    assert mbe.neuron_mse(neuron, torch.rsqrt) == pytest.approx(record["metrics"]["mse"], rel=1e-6)
    assert record["recipe"]["name"] == "best" and "sha256" in record


def copy_table(tmp_path, key):
    shutil.copy(SHIPPED_DIR / key.filename, tmp_path / key.filename)
    return tmp_path / key.filename


def test_missing_table_says_how_to_regenerate(tmp_path):
    with pytest.raises(TableError, match=r"does not exist.*python -m mbe fit gelu --n-basis 3 --timesteps 16"):
        mbe.get_neuron("gelu", n_basis=3, timesteps=16)
    with pytest.raises(TableError, match="--out"):
        mbe.get_neuron("gelu", n_basis=4, timesteps=16, directory=tmp_path)


def test_corrupt_table_is_reported(tmp_path):
    key = TableKey("exp2", 8, 16)
    path = copy_table(tmp_path, key)
    path.write_text(path.read_text()[:100])
    with pytest.raises(TableError, match="corrupt.*python -m mbe fit exp2"):
        mbe.get_neuron("exp2", n_basis=8, timesteps=16, directory=tmp_path)


def test_tampered_table_fails_its_hash(tmp_path):
    key = TableKey("exp2", 8, 16)
    path = copy_table(tmp_path, key)
    record = json.loads(path.read_text())
    record["params"]["weight"][0] += 1e-3
    path.write_text(json.dumps(record))
    with pytest.raises(TableError, match="SHA-256"):
        mbe.get_neuron("exp2", n_basis=8, timesteps=16, directory=tmp_path)


def test_stale_table_is_reported(tmp_path):
    from mbe.tables import _digest

    key = TableKey("exp2", 8, 16)
    path = copy_table(tmp_path, key)
    record = json.loads(path.read_text())
    record["recipe"]["epochs"] = 1
    record["sha256"] = _digest(record)
    path.write_text(json.dumps(record))
    with pytest.raises(TableError, match="stale.*recipe"):
        mbe.get_neuron("exp2", n_basis=8, timesteps=16, directory=tmp_path)


def test_save_and_reload_round_trip(tmp_path):
    res = mbe.fit_neuron("tanh", n_basis=2, timesteps=8, epochs=5, samples=1000)
    # a custom recipe is stale against the registry's 'best' unless loaded without the check
    path = mbe.save_table(res, tmp_path)
    record = load_table(TableKey("tanh", 2, 8), tmp_path, check_stale=False)
    assert path.exists() and record["metrics"]["mse"] == res.mse
    params = mbe.MBEParameters.from_dict(record["params"])
    assert torch.equal(params.weight, res.neuron.weight)


def test_cli_tables_command_passes():
    proc = subprocess.run([sys.executable, "-m", "mbe", "tables"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 missing/stale/corrupt" in proc.stdout


def test_cli_fit_writes_a_table(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbe",
            "fit",
            "sigmoid",
            "--n-basis",
            "2",
            "--timesteps",
            "4",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sigmoid-N2-T4-best.json").exists()
    neuron = mbe.get_neuron("sigmoid", n_basis=2, timesteps=4, directory=tmp_path)
    assert neuron.timesteps == 4
