"""The closed-form readout of halving-ladder neurons (mbe.neuron.ladder) against the simulation, bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

import mbe
from mbe.convert.persist import neuron_from_record, neuron_record
from mbe.neuron import BinaryIdentity, binary_identity, simulate
from mbe.neuron.ladder import (
    halving_levels,
    ladder_readout,
    popcount,
    significant_bits,
    staggered_form,
    staggered_readout,
)

F64 = torch.float64
CASES = [
    (1, 1),
    (1, 4),
    (3, 8),
    (8, 16),
    (16, 8),
    (32, 4),
    (8, 20),
    (8, 29),
    (8, 30),
    (8, 32),
    (4, 32),
    (2, 40),
    (8, 50),
]


def change_points(neuron: BinaryIdentity, per_basis: int = 2048) -> torch.Tensor:
    """Every input where a basis's spike pattern changes (all of them for small T, else a random sample), the
    floats on either side, the domain ends and a little beyond (the closed form also covers the clamp)."""
    t = neuron.timesteps
    d, _, _, _, _, offset = neuron.prepared(F64, torch.device("cpu"))
    gen = torch.Generator().manual_seed(t)
    points = []
    for n in range(neuron.n_basis):
        q = float(d[n, -1])
        if 2**t <= per_basis:
            m = torch.arange(2**t + 1, dtype=F64)
        else:
            m = torch.cat(
                [torch.tensor([0.0, 1.0, 2.0**t - 1, 2.0**t]), torch.randint(0, 2**t, (per_basis,), generator=gen)]
            )
        points.append(offset[n] + m.to(F64) * q)
    lo, hi = neuron.domain
    x = torch.cat(points + [torch.tensor([lo, hi, lo - 1.0, hi + 1.0, 0.0], dtype=F64)])
    return torch.cat([x, torch.nextafter(x, torch.tensor(-math.inf, dtype=F64)), torch.nextafter(x, x + 1)])


def dense(neuron, count=50_000):
    lo, hi = neuron.domain
    gen = torch.Generator().manual_seed(1)
    return torch.rand(count, dtype=F64, generator=gen) * (hi - lo + 0.2) + lo - 0.1


def reference(neuron, x):
    d, r, vth, w, b, off = neuron.prepared(F64, x.device)
    res = simulate(x, d, r, vth, w, b, off, spike_fn=lambda v, _: (v >= 0).to(v.dtype), return_counts=True)
    return res.output, res.spike_counts  # the step-by-step loop itself (a custom spike_fn skips every fast path)


def per_basis_args(neuron, dtype=F64):
    """:func:`ladder_readout`'s arguments for ``neuron`` (the per-basis form, whichever form ``ladder`` picks)."""
    d, r, vth, weight, bias, offset = neuron.prepared(dtype, torch.device("cpu"))
    alpha = halving_levels(d, r, vth)
    top = torch.tensor(2.0**neuron.timesteps - 1, dtype=dtype)
    return alpha * 2.0 ** (1 - neuron.timesteps), top, weight, bias, offset, neuron.timesteps >= 31


@pytest.mark.parametrize("n_basis,timesteps", CASES)
def test_ladder_readouts_are_the_simulation_bit_for_bit(n_basis, timesteps):
    neuron = binary_identity(n_basis, timesteps)
    readout, args = neuron.ladder(F64, torch.device("cpu"))
    # staggered for N a power of two (from T = 30 on with alpha rounded to fewer bits, so that the sums of multiples
    # of w q and the float32 bias stay exact in float64; for N=8 up to T = 49). Not for N = 3: w = float32(1/3) has
    # 24 bits, and the sums of multiples of w q need more than float64 holds
    power_of_two = n_basis & (n_basis - 1) == 0
    assert (readout is staggered_readout) == (n_basis > 1 and power_of_two and timesteps < 50)
    for x in (change_points(neuron), dense(neuron)):
        ref_out, ref_counts = reference(neuron, x)
        for out, counts in (readout(x, *args), ladder_readout(x, *per_basis_args(neuron))):
            assert torch.equal(out, ref_out) and torch.equal(counts, ref_counts)


def with_offsets(neuron, offsets, weight=None, bias=None):
    """A copy of the binary identity ``neuron`` with other offsets (and weights or bias)."""
    params = neuron.parameters_record()
    params.input_offset = torch.tensor(offsets, dtype=torch.float32)
    if weight is not None:
        params.weight = torch.tensor(weight, dtype=torch.float32)
    if bias is not None:
        params.bias = torch.tensor(bias, dtype=torch.float32)
    return BinaryIdentity(params, neuron.timesteps, domain=neuron.domain)


def test_the_staggered_form_holds_for_any_spread_below_a_step_and_only_there():
    """Offsets in any order spread over up to a step less a little (the proof's gap), bit for bit at every change
    point of every basis; a spread of a full step, unequal weights or a bias whose low bits the readout's sums
    cannot hold fall back to the per-basis form."""
    base = binary_identity(4, 8)
    q = float(base.alpha_d[0]) * 2.0**-7
    lo = base.domain[0]
    for spread in (0.0, 0.25, 0.5, 0.99):
        neuron = with_offsets(base, [lo - spread * q * f for f in (0.3, 1.0, 0.0, 0.6)])
        readout, args = neuron.ladder(F64, torch.device("cpu"))
        assert readout is staggered_readout, spread
        for x in (change_points(neuron), dense(neuron)):
            ref_out, ref_counts = reference(neuron, x)
            out, counts = readout(x, *args)
            assert torch.equal(out, ref_out) and torch.equal(counts, ref_counts), spread
    cpu = torch.device("cpu")
    assert with_offsets(base, [lo, lo - 1.01 * q, lo, lo]).ladder(F64, cpu)[0] is ladder_readout  # over a step
    assert with_offsets(base, [lo] * 4, weight=[0.25, 0.25, 0.25, 0.5]).ladder(F64, cpu)[0] is ladder_readout
    assert with_offsets(base, [lo] * 4, bias=1 + 2**-23).ladder(F64, cpu)[0] is staggered_readout
    d, r, vth, weight, bias, offset = base.prepared(F64, cpu)
    alpha = halving_levels(d, r, vth)
    fine_bias = torch.tensor(1 + 2**-52, dtype=F64)  # its last bit is below what the sums of multiples of w q hold
    assert staggered_form(alpha, weight, bias, offset, 8) is not None
    assert staggered_form(alpha, weight, fine_bias, offset, 8) is None
    assert staggered_form(alpha, weight, bias, None, 8) is None
    assert staggered_form(alpha[:1], weight[:1], bias, offset[:1], 8) is None


@pytest.mark.slow
def test_compiled_ladder_readout_is_the_simulation_bit_for_bit(monkeypatch):
    """Compiled (one graph per N and count width, T passed as tensors) at every change point; also the
    regression found while building it: a 0-d tensor bound in ``clamp`` was baked into the first graph."""
    from mbe.neuron import compiled

    monkeypatch.setenv("MBE_COMPILE", "1")
    for n_basis, timesteps in [(8, 16), (8, 22), (8, 30), (8, 32), (3, 8), (16, 8)]:
        neuron = binary_identity(n_basis, timesteps)
        forms = (neuron.ladder(F64, torch.device("cpu")), (ladder_readout, per_basis_args(neuron)))
        for x in (change_points(neuron), dense(neuron), dense(neuron, 5)):
            ref_out, ref_counts = reference(neuron, x)
            for readout, args in forms:
                out, counts = compiled.compiled_elementwise(readout, x, *args)
                assert compiled.compile_enabled(), compiled._failed
                assert torch.equal(out, ref_out) and torch.equal(counts, ref_counts), (n_basis, timesteps, readout)


@pytest.mark.parametrize("timesteps", [4, 16, 32])
def test_a_binary_identity_takes_the_ladder_through_evaluate_and_the_products(timesteps):
    neuron = binary_identity(8, timesteps)
    x = dense(neuron).clamp(-1, 1)
    res, clamped = neuron.evaluate(x)
    ref_out, ref_counts = reference(neuron, x)
    assert clamped == 0 and torch.equal(res.output, ref_out) and torch.equal(res.spike_counts, ref_counts)
    spiking = neuron.evaluate(x, return_spikes=True)[0]  # event mode still simulates, with the same numbers
    assert torch.equal(spiking.output, ref_out) and torch.equal(spiking.spikes.sum((0, 1)), ref_counts)
    # the error bound of binary_identity's docstring (q / 2N; from about T = 24 on the float32 offsets and bias
    # can no longer hold the q / N stagger and the q / 2 centring, and it is q), alpha rounded up from T = 30 on
    alpha = float(neuron.alpha_d[0])
    bound = alpha / (8 * 2**timesteps) * 1.001 if timesteps <= 16 else alpha * 2.0 ** (1 - timesteps)
    assert float((res.output - x).abs().max()) <= bound
    assert significant_bits(alpha) + timesteps <= 53


def test_a_binary_identity_beyond_float64s_ladders_keeps_its_level():
    """From T = 53 on no halving ladder is exact in float64: the level is the formula's, unrounded, and the
    readout is simulated (no closed form)."""
    for timesteps in (53, 64):
        neuron = binary_identity(8, timesteps)
        exact = 2.0 / (2.0 * (1.0 - 2.0**-timesteps))
        assert float(neuron.alpha_d[0]) == float(torch.tensor(exact, dtype=torch.float32))
        assert neuron.ladder(F64, torch.device("cpu")) is None


def test_which_kernels_are_ladders():
    cpu = torch.device("cpu")
    identity = binary_identity(8, 16)
    assert halving_levels(*identity.prepared(F64, cpu)[:3]) is not None
    assert identity.ladder(torch.float32, cpu) is None  # 24-bit levels and 16 steps do not fit float32's 24 bits
    assert binary_identity(4, 1).ladder(torch.float32, cpu) is not None  # alpha = 2: exact in float32 too
    assert mbe.get_neuron("gelu", n_basis=4, timesteps=16).ladder(F64, cpu) is None
    assert mbe.get_neuron("identity", n_basis=8, timesteps=16).ladder(F64, cpu) is None  # the fitted table
    d, r, vth = (k.double() for k in identity.kernels())
    nudged = d.clone()
    nudged[3, 5] = torch.nextafter(nudged[3, 5], torch.tensor(1.0, dtype=F64))
    assert halving_levels(nudged, nudged, nudged) is None
    assert halving_levels(d, r * 2, vth) is None
    assert halving_levels(-d, -r, -vth) is None
    assert significant_bits(1.0) == 1 and significant_bits(0.75) == 2 and significant_bits(1 + 2**-52) == 53


def test_popcount_counts_set_bits():
    values = [0, 1, 2, 3, 255, 2**16 - 1, 2**30 + 5, 2**31 - 1]
    for dtype in (torch.int32, torch.int64):
        v = torch.tensor(values, dtype=dtype)
        assert popcount(v).tolist() == [bin(k).count("1") for k in values]
    wide = [2**31, 2**40 + 2**33 + 1, 2**53 - 1, 2**62 + 7]
    assert popcount(torch.tensor(wide)).tolist() == [bin(k).count("1") for k in wide]


def test_binary_identity_refuses_kernels_that_do_not_halve():
    params = binary_identity(4, 8).parameters_record()
    params.dt = params.dt * 1.5
    with pytest.raises(ValueError, match="ln 2"):
        BinaryIdentity(params, 8)


def test_a_saved_binary_identity_loads_as_one():
    neuron = binary_identity(8, 16)
    loaded = neuron_from_record(neuron_record(neuron))
    assert type(loaded) is BinaryIdentity and loaded.timesteps == 16
    assert all(torch.equal(a, b) for a, b in zip(loaded.kernels(), neuron.kernels(), strict=True))


def step_by_step_encoding(x, rng, timesteps):
    """What :func:`mbe.ops.encoding.encode` computes, op by op: scale, simulate the identity neuron, decode."""
    neuron = binary_identity(8, timesteps)
    mid, half = (rng[0] + rng[1]) / 2, (rng[1] - rng[0]) / 2
    out, counts = reference(neuron, (x.double() - mid) / half)
    return mid + half * out, counts


@pytest.mark.parametrize("compile_on", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_encode_in_one_pass_is_the_step_by_step_encoding(compile_on, monkeypatch):
    """Operands inside their range take encode's fused pass (scale, closed form, decode); bit for bit what the
    steps give, float32 and float64 operands, staggered (T=8, 16) and per-basis (T=32) forms, odd sizes."""
    from mbe.ops.encoding import encode

    monkeypatch.setenv("MBE_COMPILE", "1" if compile_on else "0")
    gen = torch.Generator().manual_seed(3)
    for timesteps in (8, 16, 32):
        for dtype, size in ((torch.float32, (3, 257)), (F64, (5,)), (torch.float32, (2, 40_000))):
            x = (torch.randn(size, generator=gen) * 2).to(dtype)
            rng = (float(x.min()) - 0.01, float(x.max()) + 0.02)
            enc = encode(x, rng, timesteps)
            decoded, counts = step_by_step_encoding(x, rng, timesteps)
            assert torch.equal(enc.decoded, decoded) and torch.equal(enc.counts, counts), (timesteps, dtype, size)
            assert enc.clamped == 0 and enc.spikes is None
