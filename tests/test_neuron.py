"""The pure dynamics and the neuron modules."""

import math
import warnings

import pytest
import torch

import mbe
from mbe.neuron.functional import SigmoidSurrogate, exponential_kernel, simulate


def hand_loop(xs, d, r, vth, w, b, c):
    """The MBE equations written out per element, per basis, per step, in Python floats."""
    outs, counts = [], []
    for x in xs:
        out, count = b, 0
        os_ = []
        for n in range(len(w)):
            u, o = x - c[n], 0.0
            for t in range(len(d[n])):
                s = 1.0 if u >= vth[n][t] else 0.0
                u = u - r[n][t] * s
                o = o + d[n][t] * s
                count += int(s)
            os_.append(o)
        for n in range(len(w)):
            out = out + w[n] * os_[n]
        outs.append(out)
        counts.append(count)
    return outs, counts


def random_kernels(n, t, gen, dtype=torch.float64):
    alpha = torch.rand(n, generator=gen, dtype=dtype) + 0.5
    tau = torch.rand(n, generator=gen, dtype=dtype) + 0.5
    dt = torch.rand(n, generator=gen, dtype=dtype) + 0.2
    return [exponential_kernel(alpha * s, tau * s2, dt, t) for s, s2 in ((1.0, 1.0), (1.3, 0.9), (0.8, 1.1))]


def test_simulate_equals_hand_written_loop_exactly():
    gen = torch.Generator().manual_seed(0)
    n, t = 3, 7
    d, r, vth = random_kernels(n, t, gen)
    w = torch.randn(n, generator=gen, dtype=torch.float64)
    c = torch.randn(n, generator=gen, dtype=torch.float64) * 0.3
    b = 0.25
    x = torch.randn(200, generator=gen, dtype=torch.float64) * 2
    res = simulate(x, d, r, vth, w, b, c, return_counts=True)
    ref, counts = hand_loop(x.tolist(), d.tolist(), r.tolist(), vth.tolist(), w.tolist(), b, c.tolist())
    assert torch.equal(res.output, torch.tensor(ref, dtype=torch.float64))
    assert torch.equal(res.spike_counts, torch.tensor(counts, dtype=torch.float64))


def test_kernel_is_paper_eq4():
    alpha, tau, dt = torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.1])
    k = exponential_kernel(alpha, tau, dt, 5)
    expected = [2.0 * math.exp(-i * 0.1 / 0.5) for i in range(5)]
    assert torch.allclose(k[0], torch.tensor(expected), rtol=1e-6)


@pytest.mark.parametrize("timesteps", [4, 8, 16])
def test_halving_basis_is_a_t_bit_quantiser(timesteps):
    level = 3.0  # leading threshold A: codes [0, 2A) with step A / 2^(T-1)
    halves = level * torch.pow(2.0, -torch.arange(timesteps, dtype=torch.float64))[None]
    x = torch.linspace(0, 2 * level, 5001, dtype=torch.float64)[:-1]
    out = simulate(x, halves, halves, halves, torch.ones(1, dtype=torch.float64)).output
    step = level / 2 ** (timesteps - 1)
    err = x - out
    assert bool((err >= 0).all()) and bool((err < step).all())
    assert torch.equal(out, torch.floor(x / step) * step)


def test_spike_trains_and_counts_shapes_and_consistency():
    neuron = mbe.get_neuron("gelu", n_basis=4, timesteps=16)
    x = torch.randn(2, 3, 5) * 3
    res = neuron.run(x, return_spikes=True)
    assert res.output.shape == x.shape
    assert res.spikes.shape == (4, 16, 2, 3, 5)
    assert set(res.spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(res.spikes.sum((0, 1)), res.spike_counts)
    # output decodes from the spikes: b + sum_n w_n sum_t d_n[t] s_n[t]
    d, _, _ = neuron.kernels()
    o = torch.einsum("nt,nt...->n...", d, res.spikes)
    decoded = neuron.bias + sum(neuron.weight[n] * o[n] for n in range(4))
    assert torch.allclose(decoded, res.output, atol=1e-5)


def test_module_is_stateless_between_calls():
    neuron = mbe.get_neuron("silu", timesteps=8)
    x = torch.randn(64)
    assert torch.equal(neuron(x), neuron(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_to(dtype):
    neuron = mbe.get_neuron("tanh", timesteps=16).to(dtype=dtype)
    assert neuron.weight.dtype == dtype and neuron.tau_d.dtype == dtype
    y = neuron(torch.linspace(-3, 3, 50, dtype=dtype))
    assert y.dtype == dtype
    assert torch.allclose(y.double(), torch.tanh(torch.linspace(-3, 3, 50, dtype=torch.float64)), atol=0.02)


def test_half_precision_inputs_compute_in_fp32():
    neuron = mbe.get_neuron("gelu", timesteps=16)
    x = torch.linspace(-3, 3, 101)
    y16 = neuron(x.to(torch.bfloat16))
    assert y16.dtype == torch.bfloat16
    assert torch.allclose(y16.float(), neuron(x.to(torch.bfloat16).float()).to(torch.bfloat16).float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_matches_cpu():
    neuron = mbe.get_neuron("gelu", timesteps=16)
    x = torch.randn(1000) * 4
    cpu = neuron(x)
    gpu = neuron.to("cuda")(x.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)


def test_buffers_move_with_to_meta_device():
    neuron = mbe.get_neuron("gelu", timesteps=16).to("meta")
    assert neuron.weight.device.type == "meta"


def test_gradients_flow_through_the_surrogate():
    gen = torch.Generator().manual_seed(1)
    d, r, vth = (k.float().requires_grad_(True) for k in random_kernels(2, 6, gen))
    w = torch.ones(2, requires_grad=True)
    c = torch.zeros(2, requires_grad=True)
    x = torch.rand(500, generator=gen) * 3
    out = simulate(x, d, r, vth, w, 0.0, c, spike_fn=SigmoidSurrogate(4.0)).output
    loss = ((out - torch.sin(x)) ** 2).mean()
    loss.backward()
    for g in (d.grad, r.grad, vth.grad, w.grad, c.grad):
        assert g is not None and bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0


def test_heaviside_gives_no_gradient_path():
    x = torch.rand(10)
    vth = torch.ones(1, 3, requires_grad=True)
    out = simulate(x, torch.ones(1, 3), torch.ones(1, 3), vth, torch.ones(1)).output
    assert not out.requires_grad


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(bad):
    neuron = mbe.get_neuron("gelu", timesteps=16)
    x = torch.zeros(10)
    x[3] = bad
    with pytest.raises(ValueError, match="non-finite"):
        neuron(x)


def test_integer_input_raises_type_error():
    with pytest.raises(TypeError, match="floating-point"):
        mbe.get_neuron("gelu", timesteps=16)(torch.arange(5))


def test_out_of_domain_is_clamped_counted_and_warned_once():
    neuron = mbe.get_neuron("exp2", timesteps=16)  # domain [0, 1]
    x = torch.tensor([-0.5, 0.25, 1.5, 3.0])
    with pytest.warns(mbe.DomainWarning, match=r"exp2.*\(0\.0, 1\.0\)"):
        y = neuron(x)
    assert neuron.stats.clamped == 3
    assert torch.allclose(y, neuron(torch.tensor([0.0, 0.25, 1.0, 1.0])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neuron(x)  # second time: counted, not warned
    assert neuron.stats.clamped == 6  # the in-domain call in between clamps nothing


def test_stats_firing_rate():
    neuron = mbe.get_neuron("rsqrt", timesteps=16)
    neuron.reset_stats()
    x = torch.linspace(0.5, 2, 100)
    res = neuron.run(x)
    assert neuron.stats.elements == 100 and neuron.stats.calls == 1
    assert neuron.stats.spikes == int(res.spike_counts.sum())
    assert 0 < neuron.stats.firing_rate == neuron.stats.spikes / (100 * neuron.n_basis * 16) <= 1


@pytest.mark.parametrize("n,t", [(0, 16), (4, 0), (4, 65), (2.5, 16), (True, 8)])
def test_invalid_counts_raise(n, t):
    with pytest.raises(ValueError):
        mbe.fit_neuron("gelu", n_basis=n, timesteps=t, epochs=1)


@pytest.mark.parametrize("domain", [(1.0, 1.0), (2.0, 1.0), (float("nan"), 1.0), (0.0, float("inf")), "ab", (1,)])
def test_invalid_domain_raises(domain):
    with pytest.raises(ValueError):
        mbe.fit_neuron("gelu", domain=domain, n_basis=2, timesteps=4, epochs=1)


def test_fs_neuron_binary_init_is_quantiser_and_counts_3t():
    p = mbe.FSParameters.binary(8, in_range=4.0, out_range=4.0)
    neuron = mbe.FSNeuron(p, function="identity", domain=(0.0, 3.99))
    x = torch.linspace(0, 3.99, 300)
    err = x - neuron(x)
    assert bool((err >= -1e-6).all()) and bool((err < 4.0 / 2**8 + 1e-6).all())
    assert neuron.num_values() == 24


@pytest.mark.slow
def test_compiled_readout_matches_simulate_bit_for_bit(monkeypatch):
    """The torch.compile'd fused path (kernels padded to a bucket) gives exactly simulate's numbers."""
    from mbe.neuron import compiled

    monkeypatch.setenv("MBE_COMPILE", "1")  # on, even when the fast tier turned it off

    for fn, n, t, dtype in [("gelu", 4, 12, torch.float32), ("identity", 8, 16, torch.float64)]:
        nrn = mbe.get_neuron(fn, n_basis=n, timesteps=t)
        d, r, vth = nrn.kernels()
        w, b, off = (v.to(dtype) for v in nrn.readout())
        lo, hi = nrn.domain
        for shape in [(1,), (3,), (7,), (5, 20), (3, 1 << 14)]:  # tiny inputs are padded, large ones as they are
            gen = torch.Generator().manual_seed(0)
            x = torch.rand(shape, dtype=dtype, generator=gen) * (hi - lo) + lo
            ref = mbe.neuron.functional.simulate(
                x, d.to(dtype), r.to(dtype), vth.to(dtype), w, b, off, return_counts=True
            )
            out, counts = compiled.compiled_readout(x, d.to(dtype), r.to(dtype), vth.to(dtype), w, b, off)
            assert compiled.compile_enabled(), compiled._failed
            assert out.shape == shape and torch.equal(out, ref.output) and torch.equal(counts, ref.spike_counts)
        pd, pr, pv, pw, po = compiled.pad_to_bucket(d, r, vth, w, off)
        assert pd.shape == (max(4, n), 16) and torch.isinf(pv[:, t:]).all() and (pw[n:] == 0).all()


@pytest.mark.slow
def test_compiled_loop_is_parallel_even_when_first_called_on_a_few_elements():
    """Inductor decides from the compiling call's size whether a C++ loop is parallel; a neuron first called on a
    row of statistics must not run single-threaded on every later input (``INDUCTOR_OPTIONS``)."""
    from torch._inductor.utils import fresh_inductor_cache, run_and_get_code

    from mbe.neuron import compiled

    nrn = mbe.get_neuron("gelu", n_basis=4, timesteps=8)
    kernels = nrn.prepared(torch.float32, torch.device("cpu"), padded=True)  # (d, r, vth, weight, bias, offset)
    x = torch.linspace(*nrn.domain, 16)  # far below Inductor's work threshold for a parallel loop
    fn = compiled._compile(lambda x, *args: compiled.readout_per_basis(x, *args))  # traced afresh: a new code object
    with fresh_inductor_cache(), torch.no_grad():
        (out, counts), code = run_and_get_code(fn, x, *kernels)
    assert "#pragma omp parallel" in "\n".join(code)
    ref = mbe.neuron.functional.readout(x, *kernels)
    assert torch.equal(out, ref[0]) and torch.equal(counts, ref[1])


@pytest.mark.parametrize("chunk", [1 << 20, 600, 1])
def test_eager_readout_runs_bases_together_with_simulates_numbers(monkeypatch, chunk):
    """The eager readout takes as many bases at once as fit in EAGER_CHUNK elements (all, some, one at a time):
    output and spike counts bit for bit those of simulate and of the per-basis form the compiler fuses."""
    from mbe.neuron import functional

    monkeypatch.setattr(functional, "EAGER_CHUNK", chunk)
    for fn, n, t, dtype in [("gelu", 4, 12, torch.float32), ("identity", 8, 16, torch.float64)]:
        nrn = mbe.get_neuron(fn, n_basis=n, timesteps=t)
        d, r, vth = (k.to(dtype) for k in nrn.kernels())
        w, b, off = (v.to(dtype) for v in nrn.readout())
        lo, hi = nrn.domain
        x = torch.rand(3, 100, dtype=dtype, generator=torch.Generator().manual_seed(1)) * (hi - lo) + lo
        ref = functional.simulate(x, d, r, vth, w, b, off, return_counts=True)
        for path in (functional.readout, functional.readout_per_basis):
            out, counts = path(x, d, r, vth, w, b, off)
            assert torch.equal(out, ref.output) and torch.equal(counts, ref.spike_counts)
        out, _ = functional.readout(x, d, r, vth, w, b, None)  # no offsets
        assert torch.equal(out, functional.readout_per_basis(x, d, r, vth, w, b, None)[0])


def test_prepared_kernels_follow_the_neurons_parameters():
    """The kernels a neuron caches for its fused path are rebuilt when a buffer changes in place or T does."""
    nrn = mbe.get_neuron("gelu", n_basis=4, timesteps=8)
    x = torch.linspace(-3, 3, 50)
    before = nrn(x)
    assert nrn.prepared(torch.float32, x.device) is nrn.prepared(torch.float32, x.device)  # cached
    with torch.no_grad():
        nrn.weight.mul_(2.0)
    assert torch.allclose(nrn(x) - nrn.bias, 2 * (before - nrn.bias), atol=1e-5)
    with torch.no_grad():
        nrn.weight.div_(2.0)
    assert torch.equal(nrn(x), before)


def test_compiled_readout_falls_back_to_eager_with_one_warning(monkeypatch):
    from mbe.neuron import compiled

    monkeypatch.setenv("MBE_COMPILE", "1")

    def broken():
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(compiled, "_fn", broken)
    monkeypatch.setattr(compiled, "_failed", None)
    nrn = mbe.get_neuron("gelu", n_basis=4, timesteps=16)
    x = torch.linspace(-8, 8, 1000)
    with pytest.warns(RuntimeWarning, match="no C.. compiler here"):
        out, _ = compiled.compiled_readout(x, *nrn.kernels(), *nrn.readout())
    assert not compiled.compile_enabled()
    assert torch.equal(out, nrn(x))  # eager from now on, same numbers


def test_an_error_of_the_input_itself_is_raised_and_compiling_stays_on(monkeypatch):
    """An error the eager function raises too (here a reduction over an empty row) is the input's, not the
    compiler's: it is raised as eager raises it, with no warning, and compiling stays on."""
    from mbe.neuron import compiled

    monkeypatch.setenv("MBE_COMPILE", "1")
    monkeypatch.setattr(compiled, "_failed", None)

    def row_max(t):
        return t.amax(-1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(IndexError, match="non-zero size"):
            compiled.compiled_call(row_max, torch.ones(3, 0))
    assert compiled.compile_enabled()


def test_compiled_paths_raise_dynamos_limits_only_for_their_call(monkeypatch):
    """``_run`` sets ``DYNAMO_LIMITS`` for the compiled call and restores the caller's values after it, also when the
    call fails."""
    from mbe.neuron import compiled

    config = torch._dynamo.config
    caller = config.recompile_limit  # set and restored by hand: monkeypatch's undo deletes (hides) a config entry
    config.recompile_limit = 3
    seen = []

    def probe(*args):
        seen.append({name: getattr(config, name) for name in compiled.DYNAMO_LIMITS})
        return args[0] * 2

    def failing(*args):
        probe(*args)
        raise RuntimeError("compiler broken")

    x = torch.ones(3)
    try:
        assert torch.equal(compiled._run(lambda: probe, lambda t: t, x), x * 2)
        monkeypatch.setattr(compiled, "_failed", None)
        with pytest.warns(RuntimeWarning, match="compiler broken"):
            assert torch.equal(compiled._run(lambda: failing, lambda t: t + 1, x), x + 1)
        monkeypatch.setattr(compiled, "_failed", None)
        assert seen == [compiled.DYNAMO_LIMITS] * 2
        assert config.recompile_limit == 3
    finally:
        config.recompile_limit = caller


def test_compile_can_be_switched_off(monkeypatch):
    from mbe.neuron import compiled

    monkeypatch.setenv("MBE_COMPILE", "0")
    assert not compiled.compile_enabled()


def test_trace_follows_the_simulation_for_one_input():
    nrn = mbe.get_neuron("gelu", n_basis=4, timesteps=8)
    d, r, vth = nrn.kernels()
    w, b, c = nrn.readout()
    for x in (-3.0, 0.3, 2.5):
        tr = mbe.neuron.functional.trace(x, d, r, vth, w, b, c)
        ref = simulate(torch.tensor([x]), d, r, vth, w, b, c, return_spikes=True)
        assert torch.equal(tr["spike"], ref.spikes[:, :, 0])
        assert tr["output"] == pytest.approx(float(ref.output[0]), abs=1e-6)
        fired = tr["spike"].bool()
        assert (tr["membrane"][fired] >= tr["threshold"][fired]).all()
        assert (tr["membrane"][~fired] < tr["threshold"][~fired]).all()


@pytest.mark.parametrize("n_basis, timesteps", [(1, 1), (1, 8), (3, 5), (8, 4), (8, 8), (8, 16)])
def test_binary_identity_meets_its_error_bound(n_basis, timesteps):
    """The closed-form identity's error is at most alpha / (N 2^T) on its domain (plus float32 rounding)."""
    lo, hi = -1.0, 3.0
    neuron = mbe.neuron.binary_identity(n_basis, timesteps, (lo, hi))
    x = torch.linspace(lo, hi, 40001)
    err = (neuron(x).double() - x.double()).abs().max()
    alpha = (hi - lo) / (2 * (1 - 2.0**-timesteps))
    assert err <= alpha / (n_basis * 2.0**timesteps) + 1e-6
    assert neuron.n_basis == n_basis and neuron.timesteps == timesteps and neuron.domain == (lo, hi)


def test_products_encode_with_the_closed_form_identity_which_beats_the_shipped_fit():
    """``neuron_for("identity")`` (what every spiking product encodes with) is the closed form, and it is more
    accurate than the shipped fitted identity table at the same N and T."""
    from mbe.tables import neuron_for

    x = torch.linspace(-1, 1, 20001)
    for timesteps in (8, 16):
        closed, fitted = neuron_for("identity", 8, timesteps), mbe.get_neuron("identity", 8, timesteps)
        closed_err = (closed(x) - x).abs().max()
        assert torch.equal(closed.input_offset, mbe.neuron.binary_identity(8, timesteps).input_offset)
        assert closed_err * 4 < (fitted(x) - x).abs().max()


def test_binary_identity_rejects_bad_arguments():
    with pytest.raises(ValueError):
        mbe.neuron.binary_identity(0, 8)
    with pytest.raises(ValueError):
        mbe.neuron.binary_identity(8, 8, (1.0, -1.0))
