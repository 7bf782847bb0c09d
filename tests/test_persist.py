"""mbe.save / mbe.load: a conversion stored as JSON + safetensors and restored without calibrating gives the
same outputs, bit for bit; bad folders and other models give clear errors."""

import json
import warnings

import pytest
import torch

import mbe
from mbe.convert import persist
from mbe.convert import sites as site_map
from mbe.zoo.tiny import tiny_model


def _convert(arch: str, timesteps: int):
    model, batch = tiny_model(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(model, [batch], mbe.ConversionConfig(timesteps=timesteps), progress=False)
    return model, batch, snn


def _outputs(snn, batch):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snn(**batch).logits


def _held_out(arch: str, scale: float = 1.0):
    """Another seed's batch; ``scale`` stretches image inputs past the calibrated ranges (tails, clamps)."""
    _, batch = tiny_model(arch, seed=1)
    if "pixel_values" in batch:
        batch = {**batch, "pixel_values": batch["pixel_values"] * scale}
    return batch


@pytest.mark.parametrize("arch", ["gpt2", "roberta", "vit"])
def test_a_loaded_conversion_gives_the_saved_models_outputs_bit_for_bit(tmp_path, arch):
    model, batch, snn = _convert(arch, 8)
    held = _held_out(arch, scale=3.0)
    want = _outputs(snn, held)  # beyond the calibrated ranges: fits tails too, which must be saved
    mbe.save(snn, tmp_path / "conv")
    loaded = mbe.load(tmp_path / "conv", model)
    assert torch.equal(_outputs(loaded, held), want)
    assert torch.equal(_outputs(loaded, batch), _outputs(snn, batch))
    # same sites, kinds, intervals and analog reasons
    a, b = site_map(snn), site_map(loaded)
    assert list(a) == list(b)
    for name in a:
        assert (a[name].kind, a[name].ranges, a[name].spiking) == (b[name].kind, b[name].ranges, b[name].spiking)
        for key, sketch in a[name].sketches.items():
            assert torch.equal(sketch, b[name].sketches[key])
    report_a, report_b = mbe.conversion_report(snn), mbe.conversion_report(loaded)
    assert report_a.drop(columns=[c for c in report_a if "spike" in c or "rate" in c], errors="ignore").equals(
        report_b.drop(columns=[c for c in report_b if "spike" in c or "rate" in c], errors="ignore")
    )


def test_inline_sites_are_restored(tmp_path):
    """RoBERTa's classification head calls torch.tanh inline: the site exists only after calibration."""
    model, _, snn = _convert("roberta", 16)
    inline = [n for n, s in site_map(snn).items() if s.handler == "inline-call"]
    assert inline, "the tiny RoBERTa should have an inline tanh site"
    loaded = mbe.load(mbe.save(snn, tmp_path), model)
    assert [n for n, s in site_map(loaded).items() if s.handler == "inline-call"] == inline
    held = _held_out("roberta")
    assert torch.equal(_outputs(loaded, held), _outputs(snn, held))


def test_the_folder_holds_json_and_safetensors_only(tmp_path):
    model, _, snn = _convert("gpt2", 16)
    mbe.save(snn, tmp_path, source="tiny gpt2")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([persist.CONFIG_FILE, persist.SKETCH_FILE])
    record = json.loads((tmp_path / persist.CONFIG_FILE).read_text())
    assert record["source"] == "tiny gpt2"
    assert record["config"]["timesteps"] == 16
    assert record["model"]["class"] == type(model).__name__
    assert len(record["sites"]) == len(site_map(snn))
    from safetensors.torch import load_file

    sketches = load_file(str(tmp_path / persist.SKETCH_FILE))
    assert sketches and all(v.dtype == torch.float32 for v in sketches.values())


def test_a_loaded_conversion_changes_t_like_the_original(tmp_path):
    model, _, snn = _convert("gpt2", 16)
    loaded = mbe.load(mbe.save(snn, tmp_path), model, timesteps=8)
    mbe.set_timesteps(snn, 8)
    held = _held_out("gpt2")
    assert site_map(loaded) and loaded.mbe_state.config.timesteps == 8
    assert torch.equal(_outputs(loaded, held), _outputs(snn, held))


def test_load_refuses_another_model_and_names_what_differs(tmp_path):
    model, _, snn = _convert("gpt2", 16)
    mbe.save(snn, tmp_path)
    other, _ = tiny_model("gpt2", seed=3)  # same architecture, other weights
    with pytest.raises(mbe.ConversionFileError, match="weights differ"):
        mbe.load(tmp_path, other)
    bert, _ = tiny_model("bert")
    with pytest.raises(mbe.ConversionFileError, match="class differ"):
        mbe.load(tmp_path, bert)
    assert mbe.load(tmp_path, other, check_model=False).mbe_state.config.timesteps == 16


def test_bad_folders_give_clear_errors(tmp_path):
    model, _, snn = _convert("gpt2", 16)
    with pytest.raises(mbe.ConversionFileError, match="mbe_conversion.json is missing"):
        mbe.load(tmp_path / "nothing", model)
    folder = mbe.save(snn, tmp_path / "conv")
    path = folder / persist.CONFIG_FILE
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(mbe.ConversionFileError, match="not valid JSON"):
        mbe.load(folder, model)
    record = json.loads(good)
    record["format_version"] = 99
    path.write_text(json.dumps(record))
    with pytest.raises(mbe.ConversionFileError, match="format version 99"):
        mbe.load(folder, model)
    record = json.loads(good)
    del record["sites"][0]["ranges"]
    path.write_text(json.dumps(record))
    with pytest.raises(mbe.ConversionFileError, match="corrupt"):
        mbe.load(folder, model)
    (folder / persist.SKETCH_FILE).write_bytes(b"not safetensors")
    path.write_text(good)
    with pytest.raises(mbe.ConversionFileError, match="corrupt"):
        mbe.load(folder, model)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        mbe.load(folder, "gpt2")
    with pytest.raises(ValueError, match="not a converted model"):
        mbe.save(model, tmp_path / "ann")
