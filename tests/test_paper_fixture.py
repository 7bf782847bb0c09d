"""The paper profile from local copies, offline: the layouts of :mod:`mbe.zoo.local` on the test fixture of
:mod:`mbe.zoo.fixtures` (tiny random models, synthetic data), and notebooks 03-05 run on it end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mbe.zoo import ZooError, hub, local
from mbe.zoo.fixtures import write_paper_fixture

ROOT = Path(__file__).resolve().parents[1]
PAPER_MODELS = {"03": "vit-b16-imagenet", "04": "roberta-sst2", "05": "gpt2-medium-wikitext2"}


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    return write_paper_fixture(tmp_path_factory.mktemp("paper_fixture"))


def test_local_models_read_the_fixture_like_the_hub_models(fixture_dirs):
    models, data = fixture_dirs
    assert local.is_fixture(models)
    vit = hub.source("vit-b16-imagenet", models, data)
    assert isinstance(vit, local.LocalModel) and isinstance(hub.source("gpt2-medium-wikitext2"), hub.HubModel)
    test, calib = vit.batches("test", batch_size=5, limit=10), vit.batches("train", batch_size=5, limit=4, labels=False)
    assert [len(b["labels"]) for b in test] == [5, 5] and set(calib[0]) == {"pixel_values"}
    assert vit.load()(pixel_values=test[0]["pixel_values"]).logits.shape == (5, 3)
    # images in file-name order across class folders; class index = sorted folder order
    assert test[0]["labels"].tolist() == [0, 1, 2, 0, 1]
    sst = hub.source("roberta-sst2", models, data).batches("test", batch_size=16)
    assert sst[0]["input_ids"].shape[0] == 16 and sst[0]["labels"].tolist() == [0, 1] * 8
    gpt2 = hub.source("gpt2-medium-wikitext2", models, data)
    ids = gpt2.eval_tokens()
    assert ids.numel() > 2 * gpt2.context and int(ids.max()) < gpt2.load().config.vocab_size
    assert gpt2.batches("train", batch_size=2, limit=3)[0]["input_ids"].shape == (2, gpt2.context)


def test_other_documented_layouts_parquet_and_csv(fixture_dirs, tmp_path):
    models, data = fixture_dirs
    src = hub.source("vit-b16-imagenet", models, data)
    # ImageNet as parquet (HF's {"bytes": ...} cells), SST-2 as CSV, WikiText as parquet
    images = []
    for path, label in src._images():
        images.append({"image": {"bytes": path.read_bytes()}, "label": label})
    (tmp_path / "imagenet-1k").mkdir()
    pd.DataFrame(images).to_parquet(tmp_path / "imagenet-1k" / "validation-00000-of-00001.parquet")
    (tmp_path / "glue" / "sst2").mkdir(parents=True)
    table = pd.read_csv(data / "glue" / "sst2" / "validation.tsv", sep="\t")
    table.to_csv(tmp_path / "glue" / "sst2" / "validation.csv", index=False)
    (tmp_path / "wikitext" / "wikitext-2-raw-v1").mkdir(parents=True)
    text = (data / "wikitext" / "wikitext-2-raw-v1" / "wiki.test.raw").read_text()
    pd.DataFrame({"text": text.split("\n\n")}).to_parquet(tmp_path / "wikitext" / "wikitext-2-raw-v1" / "test.parquet")

    from_parquet = hub.source("vit-b16-imagenet", models, tmp_path).batches("test", batch_size=16)
    from_folders = src.batches("test", batch_size=16)
    assert from_parquet[0]["labels"].tolist() == from_folders[0]["labels"].tolist()
    assert (from_parquet[0]["pixel_values"] == from_folders[0]["pixel_values"]).all()
    csv = hub.source("roberta-sst2", models, tmp_path).batches("test", batch_size=16)[0]
    assert csv["labels"].tolist() == table.label.tolist()
    tokens = hub.source("gpt2-medium-wikitext2", models, tmp_path).eval_tokens()
    assert tokens.tolist() == hub.source("gpt2-medium-wikitext2", models, data).eval_tokens().tolist()


def test_missing_local_copies_name_every_path(fixture_dirs, tmp_path):
    models, _ = fixture_dirs
    with pytest.raises(ZooError) as err:
        hub.source("roberta-sst2", tmp_path / "none", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "none" / "textattack" / "roberta-base-SST-2") in msg
    assert str(tmp_path / "glue" / "sst2" / "validation.tsv") in msg and "sentence, label" in msg
    from mbe.reproduce import LocalCopiesMissing, run_notebooks

    with pytest.raises(LocalCopiesMissing) as err:
        run_notebooks(
            "paper",
            ROOT / "notebooks",
            tmp_path / "r",
            tmp_path / "f",
            only=["03", "05"],
            progress=False,
            models_dir=models,
            data_dir=tmp_path,  # no data there
        )
    msg = str(err.value)
    assert "imagenet-1k" in msg and "wiki.test.raw" in msg and "sst2" not in msg  # only what 03 and 05 need
    assert not (tmp_path / "r").exists()  # nothing ran
    # notebook 03 names the paper's ViT-M/16 (a timm checkpoint folder) unless paper_models leaves it out
    with pytest.raises(LocalCopiesMissing, match="vit-m16-imagenet: .*timm checkpoint folder") as err:
        run_notebooks(
            "paper",
            ROOT / "notebooks",
            tmp_path / "r",
            tmp_path / "f",
            only=["03"],
            progress=False,
            models_dir=tmp_path / "none",
            data_dir=tmp_path,
        )
    assert "vit-b16-imagenet" in str(err.value)
    with pytest.raises(LocalCopiesMissing) as err:
        run_notebooks(
            "paper",
            ROOT / "notebooks",
            tmp_path / "r",
            tmp_path / "f",
            only=["03"],
            progress=False,
            models_dir=tmp_path / "none",
            data_dir=tmp_path,
            parameters={"paper_models": ["vit-b16-imagenet"]},
        )
    assert "vit-b16-imagenet" in str(err.value) and "vit-m16-imagenet" not in str(err.value)


@pytest.mark.slow
def test_paper_profile_runs_offline_on_the_fixture_and_is_reported_as_one(fixture_dirs, tmp_path):
    from timm_stub import importable  # tests/timm_stub.py

    models, data = fixture_dirs
    out = tmp_path / "results"
    # the paper's ViT-M/16 is a timm model: notebook 03 runs it only where a fresh kernel can import timm (a working
    # torchvision); elsewhere (the project's CPU machines) it runs the ViT-B/16 alone (paper_models, notebook 03 only)
    timm_in_kernels = importable()
    vision_models = ["vit-b16-imagenet", "vit-m16-imagenet"] if timm_in_kernels else ["vit-b16-imagenet"]
    if timm_in_kernels:
        assert not local.missing(vision_models, models, data)  # the fixture wrote the tiny timm ViT
    proc = subprocess.run(
        [sys.executable, "-m", "mbe", "reproduce", "--profile", "paper", "--models", str(models), "--data", str(data)]
        + ["--only", *PAPER_MODELS, "--results", str(out), "--figures", str(tmp_path / "figures")]
        + ["--param", "timesteps=[16, 8]"]  # smoke size: two T (every T: 20 min of fits from an empty cache)
        + ["--param", f"paper_models={vision_models!r}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        # a wiring test: short fits (cached apart from full fits), as the smoke run; the eager neurons (the compiled
        # path is proven bit-identical elsewhere and compiles for minutes per notebook on 2 cores); no network
        env={**os.environ, "MBE_QUICK_FITS": "1", "MBE_COMPILE": "0", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for prefix in PAPER_MODELS:
        assert len(list((out / "executed").glob(f"{prefix}_*.ipynb"))) == 1
    vision, nlu, nlg = (pd.read_csv(out / f) for f in ("table1_vision.csv", "table2_nlu.csv", "table3_nlg.csv"))
    assert set(vision.model) == set(vision_models) and (vision.samples == 16).all()
    assert set(nlu.model) == {"roberta-sst2"} and (nlu.samples == 16).all()
    assert set(nlg.model) == {"gpt2-medium-wikitext2"} and nlg.snn_ppl.notna().all()
    for frame in (vision, nlu, nlg):  # the paper profile's sweep: both presets, at the T given
        assert set(frame.config) == {"default", "paper"} and set(frame.timesteps) == {16, 8}
    times = pd.read_csv(out / "notebook_times.csv")
    assert times.fixture.all() and len(times) == 3
    report = (out / "REPORT.md").read_text()
    assert report.count("FIXTURE, not a result") >= 1 + 2 * 3  # the header, and both presets' rows of 03-05
    for name in [*PAPER_MODELS.values(), *vision_models]:
        assert f"FIXTURE, not a result: {name}" in report
        assert f"paper model: {name}" not in report


def test_notebook_parameters_are_checked(tmp_path):
    from mbe.reproduce import run_notebooks

    with pytest.raises(ValueError, match=r"no selected notebook takes the parameter\(s\) \['timestep'\]"):
        run_notebooks("smoke", ROOT / "notebooks", tmp_path, tmp_path, only=["03"], parameters={"timestep": [8]})
    with pytest.raises(ValueError, match="own options"):
        run_notebooks("smoke", ROOT / "notebooks", tmp_path, tmp_path, only=["03"], parameters={"profile": "paper"})
    out = subprocess.run(
        [sys.executable, "-m", "mbe", "reproduce", "--only", "03", "--param", "timesteps=[16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "not a Python literal" in out.stderr
