"""Near-lossless conversion: the error budget, calibration sketches, density-weighted fits, any T."""

import warnings

import pytest
import torch

import mbe
from mbe.convert import layer_of
from mbe.convert.api import sites
from mbe.convert.matrix import relative_logit_error
from mbe.convert.sites import SKETCH_SIZE, Site
from mbe.fitting.targets import check_density, neuron_mse
from mbe.functions import get_function
from mbe.zoo.tiny import tiny_model


@pytest.fixture(scope="module")
def tiny_gpt2():
    model, batch = tiny_model("gpt2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(model, [batch], mbe.ConversionConfig(activation_domain="table"), progress=False)
    return model, batch, snn


def test_layer_of_groups_sites_by_their_first_numbered_block():
    assert layer_of("model.layers.3.mlp.act_fn") == "model.layers.3"
    assert layer_of("transformer.h.0.attn:softmax") == "transformer.h.0"
    assert layer_of("encoder.block.1.layer.0.SelfAttention") == "encoder.block.1"
    assert layer_of("bert.pooler.activation") == "(outside layers)"


def test_error_budget_rows_add_up(tiny_gpt2):
    model, batch, snn = tiny_gpt2
    frame = mbe.error_budget(model, None, [batch], timesteps=(8, 16), snn=snn, progress=False)
    assert set(frame.scope) == {"none", "all", "kind", "cumulative", "layer"}
    assert set(frame[frame.scope == "kind"].part) == {"attention", "norm", "activation"}
    assert (frame.metric == "perplexity").all()  # a causal LM without labels: next-token perplexity
    for t in (8, 16):
        rows = frame[frame.timesteps == t].set_index("part")
        # nothing spiking is the ANN (analog references agree to float rounding)
        assert rows.loc["none", "rel_logit_error"] < 1e-5 and rows.loc["none", "sites"] == 0
        # "all" is the converted model as users run it
        mbe.set_timesteps(snn, t)
        assert rows.loc["all", "rel_logit_error"] == pytest.approx(relative_logit_error(model, snn, batch), rel=1e-6)
        assert rows.loc["all", "sites"] == sum(s.spiking for s in sites(snn).values())
        # the last cumulative row switches on every kind: the same pass as "all"
        last = frame[(frame.timesteps == t) & (frame.scope == "cumulative")].iloc[-1]
        assert last.rel_logit_error == pytest.approx(rows.loc["all", "rel_logit_error"], rel=1e-9)
        kinds = frame[(frame.timesteps == t) & (frame.scope == "kind")]
        assert kinds.sites.sum() == rows.loc["all", "sites"]
        layers = frame[(frame.timesteps == t) & (frame.scope == "layer")]
        assert layers.sites.sum() == rows.loc["all", "sites"]
    assert snn.mbe_state.config.timesteps == 16  # restored
    assert all(s.enabled for s in snn.mbe_state.sites.values())  # the config's selection restored


def test_error_budget_accuracy_on_labelled_batches():
    model, batch = tiny_model("bert")
    labelled = {**batch, "labels": torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)}
    frame = mbe.error_budget(model, [batch], [labelled], timesteps=16, layers=False, progress=False)
    assert (frame.metric == "accuracy").all()
    assert frame.samples.iloc[0] == batch["input_ids"].shape[0]
    assert ((frame.change - (frame.snn - frame.ann)).abs() < 1e-12).all()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"metric": "bleu"}, ValueError, "metric must be one of"),
        ({"timesteps": ()}, ValueError, "timesteps is empty"),
        ({"timesteps": (8, 65)}, ValueError, r"timesteps must be an integer in \[1, 64\]"),
    ],
)
def test_error_budget_rejects_bad_arguments(tiny_gpt2, kwargs, error, match):
    model, batch, snn = tiny_gpt2
    with pytest.raises(error, match=match):
        mbe.error_budget(model, None, [batch], snn=snn, progress=False, **kwargs)


def test_accuracy_budget_needs_labels(tiny_gpt2):
    model, batch, snn = tiny_gpt2
    with pytest.raises(ValueError, match="needs 'labels'"):
        mbe.error_budget(model, None, [batch], snn=snn, metric="accuracy", progress=False)


def test_sketch_is_a_proportional_reproducible_sample():
    site = Site("a.0.act", "activation", "gelu", "op", "h", "GELU")
    big = torch.zeros(3 * SKETCH_SIZE)  # three quarters of everything seen is 0 ...
    small = torch.ones(SKETCH_SIZE)  # ... one quarter is 1
    site.observe("input", big)
    site.observe("input", small)
    sketch = site.sketches["input"]
    assert sketch.numel() == SKETCH_SIZE and site.seen["input"] == 4 * SKETCH_SIZE
    assert float(sketch.mean()) == pytest.approx(0.25, abs=0.01)
    twin = Site("a.0.act", "activation", "gelu", "op", "h", "GELU")
    twin.observe("input", big)
    twin.observe("input", small)
    assert torch.equal(twin.sketches["input"], sketch)
    assert float(site.quantiles("input", 0.5)) == 0.0
    site.observe("input", torch.tensor([float("nan"), float("inf")]))  # non-finite values are not inputs
    assert site.seen["input"] == 4 * SKETCH_SIZE


def test_density_weighted_fit_is_better_where_the_data_is():
    """Most inputs near 0, a few outliers stretch the domain: a density fit beats the plain fit on the data."""
    gen = torch.Generator().manual_seed(0)
    data = torch.cat([0.5 * torch.randn(4000, generator=gen), torch.tensor([-12.0, 15.0])])
    domain = (-12.0, 15.0)
    quick = {"restarts": 1, "epochs": 60, "ramp_steps": 60, "samples": 4000}
    plain = mbe.fit_neuron("silu", domain=domain, n_basis=4, timesteps=8, **quick).neuron
    dense = mbe.fit_neuron("silu", domain=domain, n_basis=4, timesteps=8, density=data, **quick).neuron
    core = data[:4000]
    silu = get_function("silu").fn
    err_plain = float(((plain(core) - silu(core)) ** 2).mean())
    err_dense = float(((dense(core) - silu(core)) ** 2).mean())
    assert err_dense < 0.5 * err_plain
    assert neuron_mse(dense, silu, domain) < 1.0  # the floor keeps the rest of the domain fitted


def test_density_sample_is_checked():
    with pytest.raises(TypeError, match="density must be a tensor"):
        check_density([0.0, 1.0], (-1.0, 1.0))
    with pytest.raises(ValueError, match="at least 2 finite values inside the domain"):
        check_density(torch.tensor([5.0, float("nan")]), (-1.0, 1.0))


def test_density_domain_fits_activations_on_the_sketch(tiny_gpt2):
    model, batch, _ = tiny_gpt2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(model, [batch], mbe.ConversionConfig(activation_domain="density"), progress=False)
    state = snn.mbe_state
    density = state.activation_density("gelu_tanh")
    assert density is not None and density.numel() > 100
    neuron = state.fitted_neuron("gelu_tanh")
    lo, hi = neuron.domain
    assert lo <= float(density.min()) and float(density.max()) <= hi
    assert relative_logit_error(model, snn, batch) < 0.05


def test_an_unshipped_t_converts_with_neurons_fitted_on_demand(tiny_gpt2, tmp_path, monkeypatch):
    """T=32 is not shipped: its neurons are fitted on their registry domains and cached on disk (the identity
    encoder is closed-form, so nothing is fitted for it)."""
    monkeypatch.setenv("MBE_CACHE_DIR", str(tmp_path))
    from mbe.ops.encoding import site_neuron

    site_neuron.cache_clear()
    model, batch, snn = tiny_gpt2
    mbe.set_timesteps(snn, 32)
    try:
        err32 = relative_logit_error(model, snn, batch)
    finally:
        mbe.set_timesteps(snn, 16)
        site_neuron.cache_clear()
    assert err32 < 0.1
    cached = sorted(p.name for p in tmp_path.rglob("*.json"))
    assert "rsqrt-N8-T32-best.json" in cached and "exp2-N8-T32-best.json" in cached
    assert not any(name.startswith("identity") for name in cached)


def test_intervals_of_accuracy_and_its_paired_change():
    from mbe.evaluate import paired_delta_interval, wilson_interval

    lo, hi = wilson_interval(990, 1000)
    assert 98.1 < lo < 98.2 and 99.4 < hi < 99.5  # the textbook Wilson interval of 99.0% on 1,000
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 100.0
    assert paired_delta_interval(0, 0, 500) == (0.0, 0.0)  # identical predictions: no uncertainty
    lo, hi = paired_delta_interval(3, 1, 1000)
    assert lo < 0.2 < hi and hi - lo == pytest.approx(2 * 1.96 * (4 - 4 / 1000) ** 0.5 / 10, rel=1e-9)
    with pytest.raises(ValueError, match="n must be positive"):
        wilson_interval(0, 0)


def test_classifier_comparison_reports_intervals():
    model, batch = tiny_model("bert")
    labelled = {
        **batch,
        "labels": torch.tensor([0, 1] * (batch["input_ids"].shape[0] // 2))[: batch["input_ids"].shape[0]],
    }
    res = mbe.compare_classifiers(model, model, [labelled], progress=False)
    assert res["agreement"] == 100.0 and res["delta_ci_low"] == res["delta_ci_high"] == 0.0
    assert res["ann_accuracy_ci_low"] <= res["ann_accuracy"] <= res["ann_accuracy_ci_high"]


def test_tails_reach_the_asymptote_or_the_headroom():
    from mbe.convert.sites import SATURATION_TOLERANCE, activation_tails, saturation_extended
    from mbe.ops.encoding import HEADROOM

    lo, hi = saturation_extended("tanh", -0.5, 0.5)
    assert lo < -3 and hi > 3
    out_range = float(torch.tanh(torch.tensor(0.5)) * 2)
    assert 1 - float(torch.tanh(torch.tensor(hi))) <= SATURATION_TOLERANCE * out_range * 1.01
    lo, hi = saturation_extended("sigmoid", -1.0, 2.0)
    assert lo < -5 and hi > 5
    assert saturation_extended("gelu", -0.5, 0.5) == (-0.5, 0.5)  # one asymptote (0, below): kept as calibrated
    assert saturation_extended("relu", -1.0, 1.0) == (-1.0, 1.0)  # no asymptote: the calibrated interval
    assert saturation_extended("gelu", -200.0, 3.0) == (-200.0, 3.0)  # never shrinks
    (t_lo, edge_lo), (edge_hi, t_hi) = activation_tails("tanh", -0.5, 0.5)
    assert (edge_lo, edge_hi) == (-0.5, 0.5) and t_lo < -3 and t_hi > 3
    assert activation_tails("tanh", -9.0, 9.0) == ()  # already at both asymptotes
    # GELU: to its asymptote (0) below, HEADROOM widths above, where it grows like x
    (t_lo, edge_lo), (edge_hi, t_hi) = activation_tails("gelu", -0.5, 0.5)
    assert t_lo < -3 and (edge_lo, edge_hi) == (-0.5, 0.5) and t_hi == 0.5 + HEADROOM
    assert activation_tails("relu", -1.0, 1.0) == ((1.0, 1.0 + 2 * HEADROOM),)  # flat below: nothing to reach
    assert activation_tails("gelu", -3.0, 5.0) == ((5.0, 5.0 + 8 * HEADROOM),)  # within tolerance of 0 at -3


class _TanhHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.act = torch.nn.Tanh()

    def forward(self, x):
        return self.act(x)


@pytest.mark.parametrize("timesteps", [8, 16])
def test_inputs_beyond_the_calibrated_range_cost_at_most_the_clamp(timesteps):
    """Calibrated on [-0.5, 0.5], a tanh site evaluated on [-6, 6]: the main neuron keeps its levels on the
    calibrated interval, the tails take what lies beyond (not clamped to tanh(0.5) = 0.46, a cost of up to 0.54)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(_TanhHead(), [{"x": torch.linspace(-0.5, 0.5, 257)}], progress=False)
        mbe.set_timesteps(snn, timesteps)
        x = torch.linspace(-6, 6, 4801)
        with torch.no_grad():
            err = (snn(x=x) - torch.tanh(x)).abs()
    site = sites(snn)["act"]
    domain = snn.mbe_state.fitted_neuron("tanh", site).domain
    assert 0.5 <= domain[1] < 0.6  # the calibrated interval (and margin), not the asymptote's reach
    inside = (x >= domain[0]) & (x <= domain[1])
    clamp_cost = (torch.tanh(x) - torch.tanh(x.clamp(*domain))).abs()
    in_err = float(err[inside].max())  # the main neuron's own error, over its whole domain
    # never worse than the clamp, up to the neuron's own error
    assert float((err - clamp_cost)[~inside].max()) <= 1.5 * in_err
    assert float(err[x.abs() > 1.5].max()) < 0.01  # far beyond: near the asymptote, where a clamp would cost > 0.4
    assert site.stats.sites["tanh.tail"].spikes > 0 and site.stats.sites["tanh"].clamped > 0


def test_a_tail_above_t16_starts_from_the_t16_tail_and_is_never_less_accurate():
    """Above T=16 a tail neuron follows the main neurons' rule: its fit starts from the T=16 tail, and is kept only
    where it cuts the objective to at most KEEP_FIT_RATIO of that tail's; else the T=16 tail serves at T=32. (A fresh
    short fit at T=32 was 10x less accurate than the T=16 tail on tiny XLM-RoBERTa's held-out input.)"""
    from mbe.convert.sites import _tail_density, activation_tails
    from mbe.tables import KEEP_FIT_RATIO, fit_objective

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(_TanhHead(), [{"x": torch.linspace(-0.5, 0.5, 257)}], progress=False)
        state, site = snn.mbe_state, sites(snn)["act"]
        main = state.fitted_neuron("tanh", site)
        width = main.domain[1] - main.domain[0]
        intervals = activation_tails("tanh", *main.domain)
        assert len(intervals) == 2
        for interval in intervals:
            low_t = state._tail_neuron("tanh", interval, main.domain, 16)
            high_t = state._tail_neuron("tanh", interval, main.domain, 32)
            assert low_t.timesteps == 16
            if high_t is not low_t:
                density = _tail_density(interval, main.domain, width)
                assert high_t.timesteps == 32
                assert fit_objective(high_t, "tanh", interval, density) <= KEEP_FIT_RATIO * fit_objective(
                    low_t, "tanh", interval, density
                )
        mbe.set_timesteps(snn, 32)
        used = {t.neuron.domain: t.neuron for t in state.tail_neurons("tanh", site)}
    assert used and set(used) <= {tuple(i) for i in intervals}  # tails whose onset lies within their interval
    for interval in intervals:
        if tuple(interval) in used:
            assert used[tuple(interval)] is state._tail_neuron("tanh", interval, main.domain, 32)


@pytest.mark.parametrize("timesteps", [8, 16])
def test_a_tail_never_costs_more_than_the_clamp_next_to_a_narrow_range(timesteps):
    """Gemma-2's logit soft-cap on a tiny random model: tanh calibrated on [-0.0125, 0.0125], a tail to the
    asymptote 450 ranges long, whose error (~0.02 at T=8) exceeds what a clamp costs just past the edge. The
    tail takes only the inputs beyond its onset (:func:`mbe.convert.sites.tail_onset`), so no input beyond
    the range costs more than the clamp would (up to the main neuron's own error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(_TanhHead(), [{"x": torch.linspace(-0.0125, 0.0125, 257)}], progress=False)
        mbe.set_timesteps(snn, timesteps)
        x = torch.cat([torch.linspace(-0.1, 0.1, 4001), torch.linspace(-6, 6, 4801)])
        with torch.no_grad():
            err = (snn(x=x) - torch.tanh(x)).abs()
    site = sites(snn)["act"]
    lo, hi = snn.mbe_state.fitted_neuron("tanh", site).domain
    tails = snn.mbe_state.tail_neurons("tanh", site)
    assert [t.onset < lo for t in tails if t.neuron.domain[1] == lo] == [True]  # an onset beyond each edge
    assert [t.onset > hi for t in tails if t.neuron.domain[0] == hi] == [True]
    inside = (x >= lo) & (x <= hi)
    clamp_cost = (torch.tanh(x) - torch.tanh(x.clamp(lo, hi))).abs()
    assert float((err - clamp_cost)[~inside].max()) <= 1.5 * float(err[inside].max())
    assert float(err[x.abs() > 1].max()) < 0.05  # far out, the tail: a clamp would cost more than 0.7


class _GeluHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.act = torch.nn.GELU()

    def forward(self, x):
        return self.act(x)


@pytest.mark.parametrize("timesteps", [8, 16])
def test_a_growing_activation_takes_inputs_above_its_range_into_a_headroom_tail(timesteps):
    """Calibrated on [-1, 1], a GELU site run on [-6, 12]: below, a tail to GELU's asymptote; above, where GELU
    grows like x and a clamp at the edge would cost x - 1.1, a tail HEADROOM widths long; beyond it, clamped."""
    from mbe.ops.encoding import HEADROOM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(_GeluHead(), [{"x": torch.linspace(-1, 1, 257)}], progress=False)
        mbe.set_timesteps(snn, timesteps)
        x = torch.linspace(-6, 12, 7201)
        with torch.no_grad():
            err = (snn(x=x) - torch.nn.functional.gelu(x)).abs()
    site = sites(snn)["act"]
    lo, hi = snn.mbe_state.fitted_neuron("gelu", site).domain
    reach = hi + HEADROOM * (hi - lo)
    assert [t.neuron.domain[1] for t in snn.mbe_state.tail_neurons("gelu", site)] == [lo, reach]
    in_err = float(err[(x >= lo) & (x <= hi)].max())
    assert float(err[x < lo].max()) <= 1.5 * in_err  # near GELU's asymptote, as precise as inside
    above = (x > hi) & (x <= reach)
    assert float(err[above].max()) < 0.05 < 0.5 * float((x[above] - hi).max())  # a clamp would cost up to 7.7
    beyond = x > reach
    assert torch.allclose(err[beyond], x[beyond] - reach, atol=0.05)  # clamped at the tail's end ...
    clamp_cost = (torch.nn.functional.gelu(x) - torch.nn.functional.gelu(x.clamp(lo, hi))).abs()
    assert float((err - clamp_cost)[(x < lo) | (x > hi)].max()) <= 1.5 * in_err  # ... never worse than at the edge
    assert site.stats.sites["gelu.tail"].spikes > 0 and site.stats.sites["gelu"].clamped >= int(beyond.sum())


def test_default_config_and_the_paper_preset():
    default, paper = mbe.ConversionConfig(), mbe.ConversionConfig.paper(timesteps=8)
    assert default.activation_domain == "density" and default.basis("gelu") == 16 and default.basis("tanh") == 16
    assert default.basis("identity") is None and default.basis("exp2") is None  # the paper's N (8)
    # below T=16 the slots N T of the smooth activations and the identity stay at their T=16 count
    low = mbe.ConversionConfig(timesteps=8)
    assert (low.basis("silu"), low.basis("identity"), low.basis("tanh"), low.basis("rsqrt")) == (32, 16, 32, None)
    assert mbe.default_n_basis(4)["gelu"] == 64 and mbe.default_n_basis(1)["gelu"] == 64  # at most 64
    assert mbe.default_n_basis(32) == mbe.default_n_basis(16)  # more T never lowers N
    explicit = mbe.ConversionConfig(timesteps=8, n_basis={"gelu": 4})
    assert explicit.basis("gelu") == 4 and explicit.basis("silu") is None  # a given dict is taken as it is
    assert (paper.activation_domain, paper.n_basis, paper.refine, paper.row_scaling, paper.timesteps) == (
        "table",
        {},
        0,
        False,
        8,
    )
    assert mbe.ConversionConfig.preset("paper") == mbe.ConversionConfig.paper()
    assert mbe.ConversionConfig.preset("default", timesteps=4).timesteps == 4
    with pytest.raises(ValueError, match="unknown preset 'best'"):
        mbe.ConversionConfig.preset("best")
    from mbe.experiments.conversion import sweep_config

    assert sweep_config("calibrated", 16).activation_domain == "calibrated"
    with pytest.raises(ValueError, match="unknown configuration 'fast'"):
        sweep_config("fast", 16)


def test_report_shows_the_calibration_quantiles(tiny_gpt2):
    _, _, snn = tiny_gpt2
    report = mbe.conversion_report(snn).set_index("site")
    act = report.loc["transformer.h.0.mlp.act"]
    key, values = act.quantiles.split(" ")
    lo, mid, hi = (float(v) for v in values.split("/"))
    rng_lo, rng_hi = snn.mbe_state.sites["transformer.h.0.mlp.act"].ranges["input"]
    assert key == "input" and rng_lo <= lo <= mid <= hi <= rng_hi


def test_sites_share_a_neuron_only_when_their_ranges_are_alike():
    from mbe.convert.sites import GROUP_WIDTH_RATIO, Site, _range_groups

    def site(name, lo, hi):
        s = Site(name, "activation", "gelu", "op", "h", "GELU")
        if lo is not None:
            s.ranges["input"] = (lo, hi)
        return s

    sites = [site("a", -4, 4), site("b", -3, 5), site("head", -0.5, 0.5), site("c", -0.6, 0.4), site("new", None, None)]
    groups = _range_groups(sites, 0.0, GROUP_WIDTH_RATIO)
    assert sorted(groups) == [("a", "b", "new"), ("c", "head")]
    assert _range_groups(sites, 0.0, float("inf")) == [("a", "b", "c", "head", "new")]
    assert _range_groups([site("x", None, None)], 0.0, 2.0) == [("x",)]


def test_a_narrow_head_activation_gets_its_own_neuron():
    """Tiny ELECTRA's classifier-head GELU sees a range half as wide as the first block's: under the default
    (density) it does not share that block's neuron, and no site's neuron domain is over GROUP_WIDTH_RATIO times
    its own range."""
    from mbe.convert.sites import GROUP_WIDTH_RATIO

    model, batch = tiny_model("electra")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn = mbe.convert(model, [batch], mbe.ConversionConfig(), progress=False)
    state = snn.mbe_state
    acts = [s for s in state.sites.values() if s.kind == "activation"]
    head = next(s for s in acts if s.name.startswith("classifier"))
    assert len({state.activation_group(s) for s in acts}) == 2
    assert not any(".layer.0." in name for name in state.activation_group(head))
    margin = state.config.calibration_margin
    for s in acts:
        lo, hi = s.range("input", margin)
        d_lo, d_hi = state.fitted_neuron(s.function, s).domain
        assert d_lo <= lo and hi <= d_hi and d_hi - d_lo <= GROUP_WIDTH_RATIO * (hi - lo) * (1 + 1e-9)
    report = mbe.conversion_report(snn).set_index("site")
    first = next(s for s in acts if ".layer.0." in s.name)
    assert report.loc[head.name, "neuron_domain"] != report.loc[first.name, "neuron_domain"]
