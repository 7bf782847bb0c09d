"""timm's ViT family converts through the same registry as transformers' models (issue #15, item 2).

timm's ``VisionTransformer`` (the paper's ViT-M/16 is ``vit_medium_patch16_reg4_gap_256``) is built from
``nn.LayerNorm``, ``nn.GELU`` (in ``Mlp``), an ``Attention`` that calls ``F.scaled_dot_product_attention``
inline on a fused ``qkv`` projection, register tokens and a global-average-pool head. Nothing here is
special-cased: the norms and GELU are recognised by what they compute, the SDPA call becomes an inline
attention site (``mbe/convert/handlers/inline.py``), and the rest is linear.

timm must be installed WITHOUT its torchvision dependency (``pip install --no-deps timm==1.0.31``), and is imported
here with stand-ins for torchvision's names during that one import (``tests/timm_stub.py`` says why and how).
"""

from __future__ import annotations

import importlib.util
import random
import warnings

import pytest
import torch
from timm_stub import INSTALL, import_timm  # tests/timm_stub.py
from torch import nn

import mbe
from mbe.convert import linear_reason

if importlib.util.find_spec("timm") is None:
    pytest.skip(INSTALL, allow_module_level=True)

timm = import_timm()
from timm.layers import Attention, LayerScale  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

#: the project's bounds for tiny random models (relative logit error on a held-out batch)
BOUNDS = {16: 0.005, 8: 0.01}


def tiny_vit() -> VisionTransformer:
    """A tiny ViT with the paper's ViT-M/16 layout: no class token, 4 register tokens, GAP head, fused SDPA."""
    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        reg_tokens=4,
        class_token=False,
        no_embed_class=True,
        global_pool="avg",
        num_classes=10,
    ).eval()
    for block in model.blocks:
        block.attn.fused_attn = True  # whatever TIMM_FUSED_ATTN says: the SDPA path is what is tested here
    return model


def _images(seed: int, n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def converted():
    """The tiny ViT converted at T=16 on one seeded batch (timm's forward argument is ``x``); the report after
    a held-out forward, and the held-out relative logit error at T=16 and T=8. Short fits and the eager
    neuron path (the fast tier's settings) keep it to seconds with a warm fit cache."""
    ann = tiny_vit()
    calib, held_out = {"x": _images(seed=1)}, _images(seed=2)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("MBE_QUICK_FITS", "1")
        mp.setenv("MBE_COMPILE", "0")
        warnings.simplefilter("error", mbe.ConversionWarning)  # nothing may stay analog
        snn = mbe.convert(ann, [calib], mbe.ConversionConfig(timesteps=16), progress=False)
        errors, report = {}, None
        with torch.no_grad():
            ref = ann(held_out)
            for t in (16, 8):
                mbe.set_timesteps(snn, t)
                errors[t] = float((snn(held_out) - ref).norm() / ref.norm())
                report = mbe.conversion_report(snn) if report is None else report
    return ann, snn, report, errors


def test_every_norm_gelu_and_attention_spikes(converted):
    ann, snn, report, _ = converted
    assert ann.num_reg_tokens == 4 and not ann.has_class_token and ann.global_pool == "avg"
    norms = {n for n, m in ann.named_modules() if isinstance(m, nn.LayerNorm)}
    gelus = {n for n, m in ann.named_modules() if isinstance(m, nn.GELU)}
    attention = {f"{n}:sdpa" for n, m in ann.named_modules() if isinstance(m, Attention)}
    assert len(norms) == 5 and len(gelus) == 2 and len(attention) == 2  # 2 per block, fc_norm; the GAP head
    rows = report.set_index("site")
    for names, kind in ((norms, "norm"), (gelus, "activation"), (attention, "attention")):
        for name in names:
            assert name in rows.index, f"{name} is not a site: {sorted(rows.index)}"
            row = rows.loc[name]
            assert row.kind == kind and row.status == "spiking" and row.spikes > 0, (name, row.to_dict())
    assert set(rows.loc[sorted(attention), "handler"]) == {"inline-call"}
    assert set(rows.loc[sorted(gelus), "operator"]) == {"spiking_activation('gelu')"}
    assert not (report.kind == "analog").any(), report[report.kind == "analog"]
    assert list(snn.state_dict()) == list(ann.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(snn.state_dict().values(), ann.state_dict().values(), strict=True))


@pytest.mark.parametrize("timesteps", [16, 8])
def test_held_out_logit_error_within_bound(converted, timesteps):
    error = converted[3][timesteps]
    assert error <= BOUNDS[timesteps], f"T={timesteps}: relative logit error {error:.3g} > {BOUNDS[timesteps]}"


@pytest.mark.parametrize("inplace", [False, True])
def test_layer_scale_is_known_to_be_linear(inplace):
    assert linear_reason(LayerScale(8, init_values=0.5, inplace=inplace)) is not None


@pytest.mark.slow
def test_the_papers_vit_m16_wires_up():
    """The paper's ViT-M/16 architecture (random weights, no hub): every LayerNorm, GELU and SDPA call
    becomes a spiking site of the right kind (calibration only; no spiking forward at this size)."""
    model = timm.create_model("vit_medium_patch16_reg4_gap_256", pretrained=False).eval()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("MBE_QUICK_FITS", "1")
        warnings.simplefilter("error", mbe.ConversionWarning)  # every module recognised (LayerScale is linear)
        snn = mbe.convert(model, [{"x": x}], mbe.ConversionConfig(timesteps=16), progress=False)
    report = mbe.conversion_report(snn)
    spiking = report[report.spiking.astype(bool)]
    assert spiking.groupby("kind").size().to_dict() == {"activation": 12, "attention": 12, "norm": 25}
    assert set(spiking[spiking.kind == "attention"].handler) == {"inline-call"}
    unknown = report[report.kind == "analog"]
    assert unknown.empty, unknown


def _tiny_paper_layout(num_classes: int):
    """The paper's ViT-M/16 architecture at toy size (4 register tokens, no class token, GAP head)."""
    args = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    torch.manual_seed(0)
    model = timm.create_model("vit_medium_patch16_reg4_gap_256", pretrained=False, num_classes=num_classes, **args)
    return model.eval(), args


def test_a_timm_checkpoint_folder_is_a_local_copy_of_the_papers_vit_m16(tmp_path):
    """``MODELS/<model id>/`` with timm's config.json + model.safetensors loads offline as the paper's ViT-M/16,
    called like a transformers classifier; its images are preprocessed from that config.json."""
    from mbe.zoo import hub, local, timm_models
    from mbe.zoo.fixtures import _write_images

    model, args = _tiny_paper_layout(10)
    assert model.num_reg_tokens == 4 and not model.has_class_token and model.global_pool == "avg"
    models, data = tmp_path / "models", tmp_path / "data"
    assert local.problems("vit-m16-imagenet", models, data)[0].endswith(
        "(a timm checkpoint folder of timm/vit_medium_patch16_reg4_gap_256.sbb_in12k_ft_in1k)"
    )
    folder = local.model_folder("vit-m16-imagenet", models)
    timm_models.write_folder(model, folder, "vit_medium_patch16_reg4_gap_256", args)
    _write_images(local.data_folder("vit-m16-imagenet", data) / "validation", random.Random(0))
    assert local.missing(["vit-m16-imagenet"], models, data) == {}  # no preprocessor_config.json needed
    src = hub.source("vit-m16-imagenet", models, data)
    loaded = src.load()
    assert isinstance(loaded, timm_models.TimmClassifier) and not loaded.training
    test = src.batches("test", batch_size=5, limit=10)
    x = test[0]["pixel_values"]
    assert x.shape == (5, 3, 32, 32) and test[0]["labels"].tolist() == [0, 1, 2, 0, 1]
    with torch.no_grad():
        out = loaded(**{k: v for k, v in test[0].items()})
        assert torch.equal(out.logits, model(x)) and out.logits.shape == (5, 10) and out.loss is not None
    assert loaded.pretrained_cfg["input_size"] == (3, 32, 32)


def test_the_fixture_writes_a_tiny_vit_m16_where_timm_imports_and_it_converts(tmp_path):
    """With timm importable in this process, the paper fixture holds a tiny ViT-M/16 in a timm folder, and the
    wrapped model converts and is evaluated like any classifier."""
    from mbe.zoo import hub
    from mbe.zoo.fixtures import write_paper_fixture

    models, data = write_paper_fixture(tmp_path)
    src = hub.source("vit-m16-imagenet", models, data)
    assert src.fixture and "fixture" in src.info()["metrics"]["source"]
    ann = src.load()
    calib = src.batches("train", batch_size=4, limit=4, labels=False)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("MBE_QUICK_FITS", "1")
        mp.setenv("MBE_COMPILE", "0")
        warnings.simplefilter("error", mbe.ConversionWarning)  # nothing may stay analog
        snn = mbe.convert(ann, calib, mbe.ConversionConfig(timesteps=16), progress=False)
        warnings.simplefilter("ignore", mbe.DomainWarning)
        res = mbe.compare_classifiers(ann, snn, src.batches("test", batch_size=8, limit=8), progress=False)
    assert res["samples"] == 8 and res["agreement"] >= 75
    report = mbe.conversion_report(snn)
    assert report.groupby("kind").size().to_dict().get("attention") == 2
