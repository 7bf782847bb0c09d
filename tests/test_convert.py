"""Conversion of tiny randomly initialised transformers models of all five architectures (offline)."""

import warnings

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import mbe
from mbe import ops
from mbe.convert import SiteModule
from mbe.zoo.tiny import tiny_model

IDS = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
PAD = torch.ones(2, 9, dtype=torch.long)
PAD[1, 6:] = 0


def tiny(arch: str):
    return tiny_model(arch)


ARCHS = ["vit", "bert", "roberta", "gpt2", "llama"]
# sites per tiny model: attention, norm, activation, gated product
EXPECTED_SITES = {
    "vit": (2, 5, 2, 0),
    "bert": (2, 5, 3, 0),
    "roberta": (2, 5, 3, 0),
    "gpt2": (2, 5, 2, 0),
    "llama": (2, 5, 2, 2),
}


def logits(model, batch):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model(**batch).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_every_site_is_wired(arch):
    """With every site but the activations spiking, T=16 matches the ANN to ~1e-4 of the logit scale
    (products, softmax and norms are that accurate); a mis-wired site would not."""
    model, batch = tiny(arch)
    model.eval()
    snn = mbe.convert(
        model, [batch], mbe.ConversionConfig(convert=("attention", "norm", "gated_product")), progress=False
    )
    ann, out = logits(model, batch), logits(snn, batch)
    assert out.shape == ann.shape
    assert float((out - ann).abs().max()) < 1e-3 * float(ann.abs().max())


@pytest.mark.parametrize("arch", ARCHS)
def test_full_conversion_runs_and_reports_every_site(arch):
    model, batch = tiny(arch)
    model.eval()
    snn = mbe.convert(model, [batch], progress=False)
    ann, out = logits(model, batch), logits(snn, batch)
    assert torch.isfinite(out).all() and out.shape == ann.shape
    report = mbe.conversion_report(snn)
    counts = tuple(int((report.kind == k).sum()) for k in ("attention", "norm", "activation", "gated_product"))
    assert counts == EXPECTED_SITES[arch], report[["site", "kind"]]
    sites = report[report.kind.isin(["attention", "norm", "activation", "gated_product"])]
    assert sites.spiking.all() and (sites.spikes > 0).all()
    assert ((sites.firing_rate > 0) & (sites.firing_rate <= 1)).all()
    assert (sites.ranges.str.len() > 0).all()
    assert (report.kind == "analog (linear)").any()


@pytest.mark.parametrize("arch", ARCHS)
def test_weights_untouched_and_ann_still_usable(arch):
    model, batch = tiny(arch)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ann_before = logits(model, batch)
    snn = mbe.convert(model, [batch], progress=False)
    logits(snn, batch)
    after_snn = snn.state_dict()
    assert set(after_snn) == set(before), set(after_snn) ^ set(before)
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), k  # the ANN is untouched
        assert torch.equal(after_snn[k], v), k  # and the SNN carries the same bits
    assert torch.equal(logits(model, batch), ann_before)
    assert model.config._attn_implementation != "mbe_spiking"


def test_changing_t_reuses_calibration():
    model, batch = tiny("gpt2")
    snn = mbe.convert(model, [batch], progress=False)
    ranges = {n: dict(s.ranges) for n, s in snn.mbe_state.sites.items()}
    errs = {}
    for t in (8, 16):
        mbe.set_timesteps(snn, t)
        errs[t] = float((logits(snn, batch) - logits(model, batch)).abs().mean())
    assert {n: dict(s.ranges) for n, s in snn.mbe_state.sites.items()} == ranges
    assert snn.mbe_state.config.timesteps == 16 and errs[16] < errs[8]


@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_padded_rows_equal_unpadded(arch):
    """A padded row gives the same result as the same tokens alone (masked keys contribute nothing)."""
    model, batch = tiny(arch)
    model.eval()
    if arch == "llama":
        batch = {"input_ids": IDS, "attention_mask": PAD}
    snn = mbe.convert(model, [batch], progress=False)
    full = logits(snn, batch)
    alone = {k: v[1:, :6] for k, v in batch.items()}
    short = logits(snn, alone)
    if arch == "bert":
        assert torch.allclose(full[1], short[0], atol=1e-6)
    else:  # causal LM: compare the 6 real positions
        assert torch.allclose(full[1, :6], short[0], atol=1e-5)


def test_causal_mask_is_respected():
    """Changing a later token must not change earlier positions' outputs in a causal LM."""
    model, batch = tiny("gpt2")
    snn = mbe.convert(model, [batch], progress=False)
    ids2 = batch["input_ids"].clone()
    ids2[:, -1] = (ids2[:, -1] + 1) % 100
    a, b = logits(snn, batch), logits(snn, {"input_ids": ids2})
    assert torch.equal(a[:, :-1], b[:, :-1])


def test_unrecognised_module_stays_analog_with_one_warning_or_raises_under_strict():
    """ReLU squared is no registered function: the module stays analog, named in one warning and in the
    report; strict=True raises instead. Any nn.Module is accepted (no allowlist)."""
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_act="relu2",
    )
    model = BertForSequenceClassification(cfg)
    batch = {"input_ids": IDS}
    with pytest.raises(ValueError, match=r"stay analog: .*intermediate_act_fn \(ReLUSquaredActivation\)"):
        mbe.convert(model, [batch], mbe.ConversionConfig(strict=True), progress=False)
    with pytest.warns(mbe.ConversionWarning, match="intermediate_act_fn") as record:
        snn = mbe.convert(model, [batch], progress=False)
    assert len([w for w in record if issubclass(w.category, mbe.ConversionWarning)]) == 1
    report = mbe.conversion_report(snn)
    analog = report[report.kind == "analog"]
    assert list(analog.site) == ["bert.encoder.layer.0.intermediate.intermediate_act_fn"]
    assert "no handler recognises" in analog.status.iloc[0]
    plain = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU(), torch.nn.Linear(4, 2))
    snn = mbe.convert(plain, [{"input": torch.randn(3, 4)}], progress=False)
    assert isinstance(snn[1], SiteModule) and snn[1].site.function == "gelu"
    with pytest.raises(ValueError, match="calibration is empty"):
        mbe.convert(tiny("gpt2")[0], [], progress=False)


def test_partial_conversion_by_kind_and_name():
    model, batch = tiny("vit")
    snn = mbe.convert(
        model, [batch], mbe.ConversionConfig(convert=("attention",), exclude=("1.attention",)), progress=False
    )
    logits(snn, batch)
    report = mbe.conversion_report(snn).set_index("site")
    spiking = report[report.spiking == True]  # noqa: E712
    assert list(spiking.kind.unique()) == ["attention"] and len(spiking) == 1


def test_event_mode_matches_fused_on_a_model():
    model, batch = tiny("bert")
    fused = mbe.convert(model, [batch], progress=False)
    event = mbe.convert(model, [batch], mbe.ConversionConfig(mode="event", budget_mb=8), progress=False)
    a, b = logits(fused, batch), logits(event, batch)
    assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


def test_silent_zeros_in_matmul():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(3, 5, 7, generator=g), -1)
    p[..., 5:] = 0
    v = torch.randn(3, 7, 4, generator=g)
    for mode in ("fused", "event"):
        full = ops.spiking_matmul(p, v, ranges=((0, 1), (-6, 6)), silent_zeros=True, mode=mode)
        cut = ops.spiking_matmul(
            p[..., :5].contiguous(), v[:, :5].contiguous(), ranges=((0, 1), (-6, 6)), silent_zeros=True, mode=mode
        )
        assert torch.allclose(full, cut, atol=1e-7), mode


def test_calibrated_activation_domain_is_more_accurate():
    """Fitting each activation's neuron on its calibrated interval beats the paper-domain tables."""
    model, batch = tiny("llama")
    model.eval()
    ann = logits(model, batch)
    errs = {}
    for dom in ("table", "calibrated"):
        snn = mbe.convert(model, [batch], mbe.ConversionConfig(activation_domain=dom), progress=False)
        errs[dom] = float((logits(snn, batch) - ann).abs().max())
        report = mbe.conversion_report(snn)
    assert errs["calibrated"] < errs["table"] / 5, errs
    act = report[report.kind == "activation"]
    assert (act.neuron_domain != str(mbe.get_function("silu").domain)).all()
    with pytest.raises(ValueError, match="activation_domain"):
        mbe.ConversionConfig(activation_domain="wide")


def test_compare_classifiers_counts_and_agreement():
    model, batch = tiny("bert")
    model.eval()
    labelled = [dict(batch, labels=torch.tensor([0, 1])), dict(batch, labels=torch.tensor([1, 1]))]
    same = mbe.compare_classifiers(model, model, labelled, progress=False)
    assert same["samples"] == 4 and same["agreement"] == 100 and same["kl"] == pytest.approx(0, abs=1e-9)
    assert same["ann_accuracy"] == same["snn_accuracy"]
    snn = mbe.convert(model, [batch], progress=False)
    res = mbe.compare_classifiers(model, snn, labelled, progress=False)
    assert 0 <= res["agreement"] <= 100 and res["logit_mse"] > 0
    with pytest.raises(ValueError, match="labels"):
        mbe.compare_classifiers(model, snn, [batch], progress=False)


def test_perplexity_sliding_window():
    model, batch = tiny("gpt2")
    model.eval()
    ids = torch.randint(0, 100, (30,), generator=torch.Generator().manual_seed(2))  # tiny GPT-2: 32 positions
    one = mbe.compare_language_models(model, model, ids, context=32, stride=32, progress=False)
    with torch.no_grad():
        lp = model(input_ids=ids[None]).logits[0, :-1].log_softmax(-1)
    direct = float(torch.exp(-lp.gather(-1, ids[1:, None]).mean()))
    assert one["tokens"] == 29 and one["ann_ppl"] == pytest.approx(direct, rel=1e-5)
    assert one["agreement"] == 100 and one["ppl_increase_pct"] == pytest.approx(0, abs=1e-9)
    windowed = mbe.compare_language_models(model, model, ids, context=16, stride=8, progress=False)
    assert windowed["tokens"] == 29  # every token after the first scored exactly once
    snn = mbe.convert(model, [batch], progress=False)
    res = mbe.compare_language_models(model, snn, ids, context=16, stride=8, progress=False)
    assert res["snn_ppl"] > 0 and 0 <= res["agreement"] <= 100
    # 95% intervals bracket the estimates; identical models have a zero-width perplexity interval
    assert res["ppl_increase_ci_low"] <= res["ppl_increase_pct"] <= res["ppl_increase_ci_high"]
    assert res["agreement_ci_low"] <= res["agreement"] <= res["agreement_ci_high"]
    assert one["ppl_increase_ci_low"] == pytest.approx(0, abs=1e-9) == one["ppl_increase_ci_high"]
    assert one["agreement_ci_high"] == 100 and one["agreement_ci_low"] < 100  # 29 tokens: not certain


def test_neuron_overrides_replace_one_function_everywhere():
    """ConversionConfig(neurons=...) swaps in another neuron (here: no-decay GELU) for every GELU site."""
    model, batch = tiny("vit")
    nodecay = mbe.get_neuron("gelu", n_basis=8, timesteps=16, decay=False)
    plain = mbe.convert(model, [batch], progress=False)
    swapped = mbe.convert(model, [batch], mbe.ConversionConfig(neurons={"gelu": nodecay}), progress=False)
    a, b = logits(plain, batch), logits(swapped, batch)
    assert not torch.equal(a, b)
    report = mbe.conversion_report(swapped)
    assert set(report[report.kind == "activation"].n_basis) == {8}  # the override's N, not the table's 4
    with pytest.raises(ValueError, match="T=16"):
        mbe.set_timesteps(swapped, 8)
        logits(swapped, batch)


def test_cnn_relu_and_max_pooling_convert():
    """A tiny ResNet: every ReLU and the max pooling become spiking; with ReLU's near-exact neuron the twin
    tracks the ANN closely, and weights stay bit for bit."""
    model, batch = tiny("resnet")
    snn = mbe.convert(model, [batch], progress=False)
    ann, out = logits(model, batch), logits(snn, batch)
    assert float((out - ann).abs().max()) < 2e-2 * float(ann.abs().max())
    report = mbe.conversion_report(snn)
    assert int((report.kind == "pool").sum()) == 1 and int((report.kind == "activation").sum()) == 5
    assert (report[report.kind.isin(["pool", "activation"])].spikes > 0).all()
    sd_a, sd_s = model.state_dict(), snn.state_dict()
    assert all(torch.equal(sd_a[k], sd_s[k]) for k in sd_a)


def test_unsupported_max_pool_is_named():
    model, batch = tiny("resnet")
    model.resnet.embedder.pooler = torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)
    with pytest.raises(ValueError, match="resnet.embedder.pooler .*only square, undilated MaxPool2d"):
        mbe.convert(model, [batch], mbe.ConversionConfig(strict=True), progress=False)
    with pytest.warns(mbe.ConversionWarning, match="only square, undilated MaxPool2d"):
        snn = mbe.convert(model, [batch], progress=False)
    assert "resnet.embedder.pooler" in set(mbe.conversion_report(snn).query("kind == 'analog'").site)
