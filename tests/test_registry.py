"""The conversion registry: modules recognised by what they compute, every swap checked, user handlers,
and the support matrix over many transformers architectures."""

import warnings

import pytest
import torch
from torch import nn

import mbe
from mbe import ops
from mbe.convert import SiteModule, SiteSpec, norm_spec, unregister_site, which_function
from mbe.convert.matrix import matrix_row, relative_logit_error
from mbe.zoo.tiny import tiny_model


class LlamaRMSNorm(nn.Module):
    """Looks like Llama's RMSNorm (name, weight, variance_epsilon) and matches it on a short probe, but
    adds a leak of the sequence mean on sequences longer than 8: different math on real inputs."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = 1e-6

    def forward(self, x):
        y = self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return y + 0.5 * x.mean(1, keepdim=True) if x.dim() == 3 and x.shape[1] > 8 else y


class FakeLayerNorm(nn.Module):
    """Named like a norm, has a weight and an eps, but computes a soft sign: not a norm at all."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, size))
        self.eps = 1e-5

    def forward(self, x):
        return x * self.weight / (1 + x.abs())


def _tiny_llama_with(norm_cls):
    model, batch = tiny_model("llama")
    model.model.layers[0].input_layernorm = norm_cls(32)
    return model, batch


def test_norm_variants_are_told_apart_by_what_they_compute():
    gemma, _ = tiny_model("gemma")
    spec = norm_spec(gemma.model.layers[0].input_layernorm)
    assert spec.details["offset"] == 1.0 and not spec.details["centered"]  # Gemma: x * (1 + w)
    llama, _ = tiny_model("llama")
    assert norm_spec(llama.model.layers[0].input_layernorm).details["offset"] == 0.0
    t5, _ = tiny_model("t5")
    assert norm_spec(t5.encoder.block[0].layer[0].layer_norm).operator == "spiking_rms_norm"
    assert norm_spec(nn.LayerNorm(8)).details["centered"]
    assert norm_spec(FakeLayerNorm(8)) is None


def test_activations_are_recognised_by_the_function_they_compute():
    from transformers.activations import ACT2FN

    expected = {
        "gelu": "gelu",
        "gelu_new": "gelu_tanh",
        "gelu_pytorch_tanh": "gelu_tanh",
        "silu": "silu",
        "relu": "relu",
        "tanh": "tanh",
        "sigmoid": "sigmoid",
    }
    for name, fn in expected.items():
        assert which_function(ACT2FN[name]) == fn, name
    assert which_function(nn.Softmax(-1)) is None and which_function(ACT2FN["relu2"]) is None


def test_a_familiar_name_with_different_math_is_caught_by_the_reference_check():
    model, batch = _tiny_llama_with(LlamaRMSNorm)
    with pytest.warns(mbe.ConversionWarning, match=r"input_layernorm: reference mismatch .* \(LlamaRMSNorm\)"):
        snn = mbe.convert(model, [batch], progress=False)
    report = mbe.conversion_report(snn).set_index("site")
    row = report.loc["model.layers.0.input_layernorm"]
    assert not row.spiking and row.status.startswith("analog: reference mismatch") and row.reference_error > 1e-3
    assert report.loc["model.layers.1.input_layernorm"].spiking  # the genuine RMSNorms still spike
    with pytest.raises(ValueError, match="reference mismatch"):
        mbe.convert(model, [batch], mbe.ConversionConfig(strict=True), progress=False)
    # only that site analog and everything else exact: the twin equals the ANN
    exact = mbe.convert(model, [batch], mbe.ConversionConfig(convert=()), progress=False)
    assert relative_logit_error(model, exact, batch) < 1e-6


def test_a_module_that_is_no_norm_stays_analog_and_is_named():
    model, batch = _tiny_llama_with(FakeLayerNorm)
    with pytest.warns(mbe.ConversionWarning, match=r"input_layernorm \(FakeLayerNorm\): no handler"):
        snn = mbe.convert(model, [batch], progress=False)
    analog = mbe.conversion_report(snn).query("kind == 'analog'")
    assert list(analog.site) == ["model.layers.0.input_layernorm"]


class ScaleNorm(nn.Module):
    """``g * x / ||x||`` with one learned scalar (Nguyen & Salazar): no built-in handler knows it."""

    def __init__(self, size: int):
        super().__init__()
        self.g = nn.Parameter(torch.tensor(float(size) ** 0.5))

    def forward(self, x):
        return self.g * x / x.norm(dim=-1, keepdim=True)


class SpikingScaleNorm(SiteModule):
    def observe(self, x):
        self.site.observe("input", x)

    def reference(self, x):
        return self.original.g * x / x.norm(dim=-1, keepdim=True)

    def spiking(self, x):  # x / ||x|| = rms_norm(x) / sqrt(H)
        y = ops.spiking_rms_norm(
            x, None, 0.0, input_range=self.site.range("input", 0.05), **self.state.op_kwargs(self.site)
        )
        return self.original.g * y / x.shape[-1] ** 0.5


def test_register_site_converts_a_users_own_module():
    mbe.register_site(
        "scale-norm",
        "norm",
        match=lambda m: SiteSpec("rsqrt", "spiking_rms_norm (ScaleNorm)") if isinstance(m, ScaleNorm) else None,
        build=lambda module, spec, site, state: SpikingScaleNorm(module, site, state),
    )
    try:
        model, batch = _tiny_llama_with(ScaleNorm)
        snn = mbe.convert(model, [batch], progress=False)
        site = snn.mbe_state.sites["model.layers.0.input_layernorm"]
        assert site.handler == "scale-norm" and site.spiking and site.reference_error < 1e-6
        assert relative_logit_error(model, snn, batch) < 0.05
        assert set(snn.state_dict()) == set(model.state_dict())
    finally:
        unregister_site("scale-norm")


def test_linear_lookalikes_and_position_encodings_are_not_unknown():
    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(MyLinear(4, 8), nn.Dropout(0.1), nn.ReLU(), nn.Linear(8, 2))
    snn = mbe.convert(model, [{"input": torch.randn(5, 4)}], progress=False)
    report = mbe.conversion_report(snn)
    assert not (report.kind == "analog").any() and list(report[report.kind == "activation"].site) == ["2"]
    llama, batch = tiny_model("llama")
    assert not (mbe.conversion_report(mbe.convert(llama, [batch], progress=False)).kind == "analog").any()


def test_inline_calls_become_sites():
    """RoBERTa's head calls torch.tanh inline; BLOOM computes attention inline with softmax."""
    roberta, batch = tiny_model("roberta")
    snn = mbe.convert(roberta, [batch], progress=False)
    assert snn.mbe_state.sites["classifier:tanh"].spiking
    bloom, batch = tiny_model("bloom")
    snn = mbe.convert(bloom, [batch], progress=False)
    kinds = {s.kind for s in snn.mbe_state.sites.values() if s.handler == "inline-call"}
    assert kinds == {"attention"} and relative_logit_error(bloom, snn, batch) < 0.05


@pytest.mark.parametrize("arch", ["vit", "gemma", "t5"])
def test_support_matrix_rows(arch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = matrix_row(arch, timesteps=(16,))
    assert row["analog"] == 0, row["analog_reasons"]
    assert row["rel_error_T16"] <= 0.05 and row["weights_untouched"]
    assert row["held_out_error_T16"] > 0 and row["held_out_clamped_T16"] >= 0
    assert row["attention_sites"] > 0 and row["norm_sites"] > 0 and row["activation_sites"] > 0
    assert row["energy_ratio_counted"] > 0


@pytest.mark.slow
def test_support_matrix_every_architecture(tmp_path, monkeypatch):
    from mbe.convert.matrix import support_matrix, write_support_matrix

    # one fit per activation, range group and model (the CLI adds T=8 and 32 and full fits: results/support_matrix.md);
    # short fits here, since 32 models' N=16 fits from an empty cache would take most of the suite's time
    monkeypatch.setenv("MBE_QUICK_FITS", "1")
    frame = support_matrix(timesteps=(16,), progress=False)
    assert len(frame) >= 20 and frame.weights_untouched.all()
    assert (frame.rel_error_T16 <= 0.05).all(), frame[frame.rel_error_T16 > 0.05][["arch", "rel_error_T16"]]
    csv, md = write_support_matrix(frame, tmp_path)
    assert "| vit |" in md.read_text() and csv.stat().st_size > 0


class _Norm(nn.Module):  # a user's own RMSNorm, written from scratch
    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(d) + 0.5)
        self.eps = 1e-6

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class _Block(nn.Module):  # attention and MLP with softmax and GELU written inline
    def __init__(self, d=16, heads=2):
        super().__init__()
        self.heads, self.norm1, self.norm2 = heads, nn.LayerNorm(d), _Norm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


def test_a_model_outside_the_matrix_converts_by_its_building_blocks():
    """A hand-written transformer (no transformers classes): a user's own RMSNorm whose scale is called
    `scale`, a LayerNorm, softmax and GELU written inline: all become sites, nothing stays analog."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), _Block(), _Block()).eval()
    batch = {"input": torch.randn(2, 5, 8)}
    snn = mbe.convert(model, [batch], progress=False)
    report = mbe.conversion_report(snn)
    sites = report[report.kind.isin(["norm", "activation", "attention"])]
    assert sites.spiking.all() and not (report.kind == "analog").any()
    assert set(sites[sites.handler == "inline-call"].site) == {"1:softmax", "1:gelu", "2:softmax", "2:gelu"}
    assert set(sites[sites.kind == "norm"].site) == {"1.norm1", "1.norm2", "2.norm1", "2.norm2"}
    assert set(snn.state_dict()) == set(model.state_dict())  # `scale` kept under its own name
    with torch.no_grad():
        a, s = model(**batch), snn(**batch)
    assert float((s - a).norm() / a.norm()) < 0.05
