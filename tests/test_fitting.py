"""Fitting: determinism, recipes, switches, FS baseline, user-registered functions."""

import pytest
import torch

import mbe
from mbe import paper
from mbe.fitting import RECIPES, FitRecipe


def quick(**kw):
    """A short schedule with one restart: seconds per fit, still a real fit."""
    base = dict(timesteps=8, seed=3, epochs=20, samples=2000, restarts=1, ramp_steps=60)
    base.update(kw)
    return base


def test_fit_is_deterministic_for_a_seed():
    a = mbe.fit_neuron("exp2", n_basis=2, **quick())
    b = mbe.fit_neuron("exp2", n_basis=2, **quick())
    for name in ("tau_d", "tau_r", "tau_vth", "weight", "input_offset", "bias"):
        assert torch.equal(getattr(a.neuron, name), getattr(b.neuron, name))
    assert a.mse == b.mse


def test_different_seeds_differ():
    a = mbe.fit_neuron("exp2", n_basis=2, **quick(seed=1))
    b = mbe.fit_neuron("exp2", n_basis=2, **quick(seed=2))
    assert not torch.equal(a.neuron.weight, b.neuron.weight)


def test_best_recipe_beats_paper_recipe_on_reciprocal():
    best = mbe.fit_neuron("reciprocal", n_basis=4, **quick())
    paper = mbe.fit_neuron("reciprocal", n_basis=4, recipe="paper", **quick())
    assert best.mse < paper.mse / 10


def test_paper_recipe_has_no_additions():
    p = RECIPES["paper"]
    assert (p.lr, p.epochs, p.lr_decay, p.samples) == (
        paper.FIT_LR,
        paper.FIT_EPOCHS,
        paper.FIT_LR_DECAY,
        paper.FIT_SAMPLES,
    )
    assert (p.input_shift, p.per_basis_levels, p.output_bias, p.least_squares, p.init) == (
        "none",
        False,
        False,
        False,
        "halving",
    )
    res = mbe.fit_neuron("gelu", n_basis=3, recipe="paper", **quick())
    n = res.neuron
    assert float(n.bias) == 0.0 and bool((n.input_offset == 0).all())
    alpha = float(torch.nn.functional.gelu(torch.tensor(10.0, dtype=torch.float64)))  # the target's max
    for level in (n.alpha_r, n.alpha_vth, n.alpha_d):  # one shared, fixed alpha
        assert torch.allclose(level, torch.full((3,), alpha))


def test_each_switch_changes_the_fit():
    """Switches are real: turning each one off changes the result (and the least squares pays off)."""
    on = mbe.fit_neuron("rsqrt", n_basis=3, **quick())
    no_ls = mbe.fit_neuron("rsqrt", n_basis=3, **quick(least_squares=False))
    no_levels = mbe.fit_neuron("rsqrt", n_basis=3, **quick(per_basis_levels=False))
    no_bias = mbe.fit_neuron("rsqrt", n_basis=3, **quick(output_bias=False))
    assert on.mse < no_ls.mse
    assert float(no_bias.neuron.bias) == 0.0
    assert torch.equal(no_levels.neuron.alpha_r, no_levels.neuron.alpha_r[:1].expand(3))
    assert len({on.mse, no_ls.mse, no_levels.mse, no_bias.mse}) == 4


def test_no_decay_gives_constant_kernels_and_is_worse():
    dec = mbe.fit_neuron("gelu", n_basis=4, **quick(timesteps=16))
    flat = mbe.fit_neuron("gelu", n_basis=4, **quick(timesteps=16, decay=False))
    d, r, vth = flat.neuron.kernels()
    assert torch.equal(d, d[:, :1].expand_as(d)) and torch.equal(vth, vth[:, :1].expand_as(vth))
    assert flat.mse > 10 * dec.mse


def test_invalid_recipe_values():
    with pytest.raises(ValueError, match="recipe"):
        mbe.fit_neuron("gelu", recipe="fancy")
    with pytest.raises(ValueError, match="init"):
        FitRecipe(init="zeros")
    with pytest.raises(ValueError, match="ramps"):
        FitRecipe(init="ramps", input_shift="none")


def test_target_not_finite_on_domain_raises():
    with pytest.raises(ValueError, match="not finite"):
        mbe.fit_neuron(torch.log, domain=(-1.0, 1.0), n_basis=2, **quick())


def test_callable_target_needs_domain():
    with pytest.raises(ValueError, match="domain"):
        mbe.fit_neuron(torch.sin, n_basis=2)


def test_register_and_fit_a_user_function():
    spec = mbe.register_function("softplus_test", torch.nn.functional.softplus, (-6.0, 6.0), n_basis=3, overwrite=True)
    assert "softplus_test" in mbe.list_functions()
    res = mbe.fit_neuron("softplus_test", **quick())
    assert res.neuron.n_basis == 3 and res.neuron.domain == (-6.0, 6.0)
    assert res.mse < 1e-2
    with pytest.raises(ValueError, match="already registered"):
        mbe.register_function("softplus_test", torch.sin, (0, 1))
    with pytest.raises(ValueError, match="finite"):
        mbe.register_function("bad_test", torch.log, (-1.0, 1.0))
    assert spec.name == "softplus_test"


def test_unknown_function_lists_registered():
    with pytest.raises(ValueError, match="gelu"):
        mbe.get_function("nope")


def test_fs_binary_init_beats_random_on_relu():
    relu = torch.relu
    binary = mbe.fit_fs_neuron(relu, domain=(-1.0, 1.0), timesteps=8, init="binary", recipe="paper", epochs=50)
    random = mbe.fit_fs_neuron(relu, domain=(-1.0, 1.0), timesteps=8, init="random", recipe="paper", epochs=50)
    assert binary.mse < random.mse
    assert binary.neuron.num_values() == 24


def test_surrogate_phase_never_returns_worse_than_its_start():
    res = mbe.fit_neuron("tanh", n_basis=2, **quick())
    assert res.train_mse <= res.history[0]


def test_a_warm_start_reproduces_its_parameters_and_is_never_lost():
    from mbe.fitting.recipes import get_recipe
    from mbe.fitting.state import MBEFitState

    low = mbe.fit_neuron("gelu", domain=(-2.0, 2.0), n_basis=4, **quick(timesteps=16))
    start = low.neuron.parameters_record()
    state = MBEFitState.from_params(start, 32, (-2.0, 2.0), get_recipe("best"))
    for name, value in vars(state.params()).items():
        torch.testing.assert_close(value.float(), getattr(start, name).float(), rtol=1e-6, atol=1e-7)
    high = mbe.fit_neuron("gelu", domain=(-2.0, 2.0), n_basis=4, init=start, **quick(timesteps=32))
    # the start (its readout re-solved at T=32) is the first candidate: the fit ends at or below it
    assert high.history[0] >= high.train_mse and high.neuron.timesteps == 32
    cold = mbe.fit_neuron("gelu", domain=(-2.0, 2.0), n_basis=4, **quick(timesteps=32))
    assert not torch.equal(high.neuron.tau_d, cold.neuron.tau_d)  # the start was used
    with pytest.raises(ValueError, match="init must be MBEParameters with N=2"):
        mbe.fit_neuron("gelu", domain=(-2.0, 2.0), n_basis=2, init=start, **quick())


def test_fits_above_t16_start_from_the_lower_t(tmp_path, monkeypatch):
    from mbe import tables

    monkeypatch.setenv("MBE_CACHE_DIR", str(tmp_path))
    assert [tables.refinement_anchor(t) for t in (8, 16, 17, 32, 64)] == [None, None, 16, 16, 32]
    anchor = tables.fitted_on_domain("silu", (-1.0, 1.0), 2, 16)
    warm = tables.fitted_on_domain("silu", (-1.0, 1.0), 2, 32, init=anchor)
    cold = tables.fitted_on_domain("silu", (-1.0, 1.0), 2, 32)
    folders = sorted(p.parent.name for p in tmp_path.rglob("silu-N2-T32-best.json"))
    assert len(folders) == 2 and any("_init-" in f for f in folders)  # cached apart
    assert not torch.equal(warm.tau_d, cold.tau_d)
    again = tables.fitted_on_domain("silu", (-1.0, 1.0), 2, 32, init=anchor)  # from the cache
    assert torch.equal(again.tau_d, warm.tau_d)


def test_a_lower_t_neuron_serves_a_higher_t_when_it_is_more_accurate(tmp_path, monkeypatch):
    from mbe import tables
    from mbe.neuron.mbe import MBENeuron
    from mbe.ops import spiking_activation

    monkeypatch.setenv("MBE_CACHE_DIR", str(tmp_path))
    domain = (-1.0, 1.0)
    anchor = tables.fitted_on_domain("silu", domain, 2, 16)
    # a 32-step neuron less accurate than the anchor (its readout 10% too strong) loses to it
    params = anchor.parameters_record().detach()
    params.weight *= 1.1
    worse = MBENeuron(params, 32, "silu", domain)
    assert tables.fit_objective(worse, "silu", domain) > tables.fit_objective(anchor, "silu", domain)
    assert tables.better_of(worse, anchor, "silu", domain) is anchor
    warm = tables.fitted_on_domain("silu", domain, 2, 32, init=anchor)
    chosen = tables.better_of(warm, anchor, "silu", domain)
    warm_mse, anchor_mse = (tables.fit_objective(n, "silu", domain) for n in (warm, anchor))
    assert chosen is (warm if warm_mse <= tables.KEEP_FIT_RATIO * anchor_mse else anchor)
    # the fit wins where it cuts the MSE to at most KEEP_FIT_RATIO of the anchor's, not where it is barely better
    for share, expected in ((0.95, anchor), (tables.KEEP_FIT_RATIO, warm), (0.5, warm)):
        mse = {id(anchor): 1e-4, id(warm): share * 1e-4}
        monkeypatch.setattr(tables, "fit_objective", lambda n, *args, mse=mse: mse[id(n)])
        assert tables.better_of(warm, anchor, "silu", domain) is expected, share
    monkeypatch.undo()
    # an operator at T=32 runs the 16-step neuron for its 16 steps: exactly its output at T=16
    x = torch.linspace(-1.2, 1.2, 241)
    at32 = spiking_activation("silu", x, timesteps=32, neurons={"silu": anchor})
    assert torch.equal(at32, spiking_activation("silu", x, timesteps=16, neurons={"silu": anchor}))
    with pytest.raises(ValueError, match="more steps than the operator's T=8"):
        spiking_activation("silu", x, timesteps=8, neurons={"silu": anchor})
    with pytest.raises(ValueError, match="anchor must run fewer steps"):
        tables.better_of(anchor, worse, "silu", domain)
