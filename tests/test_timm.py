"""timm's ViT family converts through the same registry as transformers' models (issue #15, item 2).

timm's ``VisionTransformer`` (the paper's ViT-M/16 is ``vit_medium_patch16_reg4_gap_256``) is built from
``nn.LayerNorm``, ``nn.GELU`` (in ``Mlp``), an ``Attention`` that calls ``F.scaled_dot_product_attention``
inline on a fused ``qkv`` projection, register tokens and a global-average-pool head. Nothing here is
special-cased: the norms and GELU are recognised by what they compute, the SDPA call becomes an inline
attention site (``mbe/convert/handlers/inline.py``), and the rest is linear.

timm must be installed WITHOUT its torchvision dependency (``pip install --no-deps timm==1.0.31``; its other
dependencies, pyyaml, huggingface_hub and safetensors, come with transformers): the only torchvision wheel for
torch 2.13 on the project's machines is a CUDA build that fails to import (``operator torchvision::nms does
not exist``) and then breaks ``from transformers import BertForSequenceClassification``. Every timm release
that has the register-token ViTs (0.9.8 and later) imports ``torchvision`` when ``timm`` is imported
(``timm.layers`` needs ``torchvision.ops.misc.FrozenBatchNorm2d``, ``timm.data`` its transforms and data sets),
and importing ``timm.models.vision_transformer`` alone runs ``timm/__init__`` too, so :func:`import_timm`
lends stand-ins for torchvision's names during that one import and removes them afterwards: nothing of
timm that is used here touches them (a timm feature that does raises ``ImportError`` saying torchvision is
missing), and transformers, which checks for torchvision through package metadata, keeps treating it as
absent (its ``is_timm_available()`` is False without torchvision, so transformers never imports timm itself).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

import pytest
import torch
from torch import nn

import mbe
from mbe.convert import linear_reason

TIMM_VERSION = "1.0.31"
INSTALL = (
    f"timm not installed: pip install --no-deps timm=={TIMM_VERSION} (never torchvision: its only wheel for "
    "torch 2.13 here is a CUDA build that fails to import and then breaks transformers)"
)

if importlib.util.find_spec("timm") is None:
    pytest.skip(INSTALL, allow_module_level=True)

MISSING = "torchvision is not installed (timm was installed with --no-deps); this timm feature needs it"


class _Absent(type):
    """A stand-in for any torchvision name: its attributes are stand-ins, calling it raises ImportError
    (so timm's module-level ``isinstance`` checks, subclassing and constant tables still import)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise ImportError(f"{MISSING} ({cls.__name__})")


class _AbsentModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(name, (), {})


class _AbsentTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every ``torchvision`` / ``torchvision.*`` import with an :class:`_AbsentModule` package."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _AbsentModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def import_timm():
    """``import timm``; where torchvision is absent, with stand-ins for its names during the import only
    (see the module docstring). Nothing named ``torchvision`` is left in ``sys.modules`` afterwards."""
    if "timm" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        import timm

        return timm
    finder = _AbsentTorchvision()
    sys.meta_path.insert(0, finder)
    try:
        import timm
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    return timm


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
