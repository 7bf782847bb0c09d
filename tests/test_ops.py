"""Spiking operators: event == fused, accuracy against the exact ops, masks, statistics, bad input."""

import warnings

import pytest
import torch

import mbe
from mbe import ops
from mbe.ops.products import event_matmul_tiles, event_mul_chunk


def close_in_scale(x, y, ref, frac=1e-5):
    scale = float(ref.abs().max())
    diff = float((x - y).abs().max())
    assert diff <= frac * scale, f"max |diff| {diff:.3g} > {frac} x output scale {scale:.3g}"


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# ---------------------------------------------------------------- event == fused
@pytest.mark.parametrize("shapes", [((3, 5, 7), (3, 5, 7)), ((4, 6), (6,)), ((2, 1, 5), (1, 3, 5))])
def test_mul_event_equals_fused(gen, shapes):
    a = torch.randn(shapes[0], generator=gen) * 2
    b = torch.randn(shapes[1], generator=gen) + 0.5
    sf, se = ops.OpStats(), ops.OpStats()
    fused = ops.spiking_mul(a, b, stats=sf)
    event = ops.spiking_mul(a, b, mode="event", stats=se, budget_mb=0.05)
    assert fused.shape == event.shape == (a * b).shape
    close_in_scale(fused, event, a * b)
    assert sf.sites["mul.a"].sops == se.sites["mul.a"].sops > 0  # every spike pair, counted both ways
    if a.shape == b.shape:  # (event mode encodes a broadcast operand once per output element)
        assert sf.sites["mul.b"].spikes == se.sites["mul.b"].spikes


@pytest.mark.parametrize("shapes", [((2, 3, 6, 8), (2, 3, 8, 5)), ((3, 7, 4), (4, 9)), ((1, 4, 5, 6), (2, 1, 6, 3))])
def test_matmul_event_equals_fused(gen, shapes):
    a = torch.randn(shapes[0], generator=gen)
    b = torch.randn(shapes[1], generator=gen) * 3
    sf, se = ops.OpStats(), ops.OpStats()
    fused = ops.spiking_matmul(a, b, stats=sf)
    event = ops.spiking_matmul(a, b, mode="event", stats=se, budget_mb=0.2)
    assert fused.shape == event.shape == (a @ b).shape
    close_in_scale(fused, event, a @ b)
    assert sf.sites["matmul.a"].sops == se.sites["matmul.a"].sops > 0


@pytest.mark.parametrize("mask_kind", [None, "additive", "bool", "causal"])
def test_softmax_event_equals_fused(gen, mask_kind):
    x = torch.randn(2, 3, 6, 6, generator=gen) * 3
    kw = {}
    if mask_kind == "additive":
        m = torch.zeros(2, 1, 1, 6)
        m[0, ..., 4:] = torch.finfo(torch.float32).min
        kw["mask"] = m
    elif mask_kind == "bool":
        kw["mask"] = torch.rand(6, 6, generator=gen) > 0.3
    elif mask_kind == "causal":
        kw["causal"] = True
    fused = ops.spiking_softmax(x, **kw)
    event = ops.spiking_softmax(x, mode="event", budget_mb=0.1, **kw)
    close_in_scale(fused, event, torch.ones(1))


def test_norms_event_equal_fused(gen):
    x = torch.randn(3, 5, 16, generator=gen) * torch.exp(torch.randn(3, 5, 1, generator=gen)) + 1
    x[..., :2] *= 20  # outlier channels, as in trained Transformers
    w, b = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    ln_f = ops.spiking_layer_norm(x, 16, w, b)
    ln_e = ops.spiking_layer_norm(x, 16, w, b, mode="event", budget_mb=0.1)
    close_in_scale(ln_f, ln_e, ln_f)
    rms_f = ops.spiking_rms_norm(x, w)
    rms_e = ops.spiking_rms_norm(x, w, mode="event", budget_mb=0.1)
    close_in_scale(rms_f, rms_e, rms_f)


# ---------------------------------------------------------------- accuracy at T=16
def test_products_are_close_to_exact(gen):
    a, b = torch.randn(50, 64, generator=gen), torch.randn(64, 40, generator=gen)
    assert float((ops.spiking_matmul(a, b) - a @ b).abs().max()) < 1e-3 * float((a @ b).abs().max())
    assert float((ops.spiking_mul(a, a) - a * a).abs().max()) < 1e-3 * float((a * a).abs().max())


def test_softmax_rows_sum_to_one_and_match_torch(gen):
    x = torch.randn(4, 12, 20, 20, generator=gen) * 2.5
    p = ops.spiking_softmax(x, timesteps=16)
    assert float((p.sum(-1) - 1).abs().max()) < 1e-3
    assert float((p - torch.softmax(x, -1)).abs().max()) < 1e-3


def test_softmax_masks_are_exact(gen):
    x = torch.randn(2, 5, 5, generator=gen)
    p = ops.spiking_softmax(x, causal=True)
    assert torch.equal(p.triu(1), torch.zeros_like(p))
    ref = torch.softmax(x.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf")), -1)
    assert float((p - ref).abs().max()) < 1e-3
    # padding (HF-style additive mask, finfo.min) gives exact zeros; a fully masked row is all zeros
    mask = torch.zeros(2, 1, 5)
    mask[0, :, 3:] = torch.finfo(torch.float32).min
    p = ops.spiking_softmax(x, mask=mask)
    assert torch.equal(p[0, :, 3:], torch.zeros(5, 2))
    assert float((p[0, :, :3].sum(-1) - 1).abs().max()) < 1e-3
    assert torch.equal(ops.spiking_softmax(x, mask=torch.zeros(5, 5, dtype=torch.bool)), torch.zeros_like(x))
    # -inf logits count as masked; other additive values shift the logits like torch
    bias = torch.randn(5, 5, generator=gen)
    assert float((ops.spiking_softmax(x, mask=bias) - torch.softmax(x + bias, -1)).abs().max()) < 1e-3


def test_softmax_other_dim(gen):
    x = torch.randn(6, 4, generator=gen)
    assert float((ops.spiking_softmax(x, dim=0) - torch.softmax(x, 0)).abs().max()) < 1e-3


def test_norms_match_torch(gen):
    x = torch.randn(4, 10, 64, generator=gen) * 3 + 2
    ln = torch.nn.LayerNorm(64)
    with torch.no_grad():
        ln.weight.normal_(generator=gen)
        ln.bias.normal_(generator=gen)
        ref = ln(x)
        out = ops.spiking_layer_norm(x, 64, ln.weight, ln.bias, ln.eps)
    assert float((out - ref).abs().max()) < 2e-3 * float(ref.abs().max())
    w = torch.rand(64, generator=gen) + 0.5
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    assert float((ops.spiking_rms_norm(x, w) - ref).abs().max()) < 2e-3 * float(ref.abs().max())


@pytest.mark.parametrize("op", ["mul", "matmul", "softmax", "layer_norm", "rms_norm", "gelu"])
def test_error_falls_as_t_grows(gen, op):
    a = torch.randn(8, 16, 16, generator=gen) * 2
    b = torch.randn(8, 16, 16, generator=gen)
    exact = {
        "mul": lambda t: (ops.spiking_mul(a, b, timesteps=t), a * b),
        "matmul": lambda t: (ops.spiking_matmul(a, b, timesteps=t), a @ b),
        "softmax": lambda t: (ops.spiking_softmax(a, timesteps=t), torch.softmax(a, -1)),
        "layer_norm": lambda t: (ops.spiking_layer_norm(a, 16, timesteps=t), torch.nn.functional.layer_norm(a, (16,))),
        "rms_norm": lambda t: (
            ops.spiking_rms_norm(a, timesteps=t),
            a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-6),
        ),
        "gelu": lambda t: (ops.spiking_activation("gelu", a, timesteps=t), torch.nn.functional.gelu(a)),
    }[op]
    errs = [float((o - r).abs().mean()) for o, r in (exact(t) for t in (8, 16))]
    assert errs[1] < errs[0], errs


def test_activations_and_swiglu(gen):
    """The operator adds no error beyond its fitted neuron's own (measured on a dense grid)."""
    x = torch.randn(100, generator=gen) * 2
    grid = torch.linspace(-8, 8, 20001)
    for name in ("gelu", "gelu_tanh", "silu", "tanh", "sigmoid"):
        fn = mbe.get_function(name).fn
        bound = float((mbe.get_neuron(name, timesteps=16)(grid) - fn(grid)).abs().max())
        out = ops.spiking_activation(name, x)
        assert out.shape == x.shape and float((out - fn(x)).abs().max()) <= bound + 1e-6, name
        assert torch.equal(out, ops.spiking_activation(name, x, mode="event"))
        wide = ops.spiking_activation(name, x, n_basis=8)  # the N=8 tables are more accurate
        assert float((wide - fn(x)).abs().mean()) < float((out - fn(x)).abs().mean()), name
    up = torch.randn(100, generator=gen)
    ref = torch.nn.functional.silu(x) * up
    silu_bound = float((mbe.get_neuron("silu", timesteps=16)(grid) - torch.nn.functional.silu(grid)).abs().max())
    # the SiLU neuron's error scaled by |up|, plus the product's encoding error (small at T=16)
    assert float((ops.spiking_swiglu(x, up) - ref).abs().max()) <= silu_bound * float(up.abs().max()) + 1e-3


# ---------------------------------------------------------------- statistics
def test_statistics_record_every_site(gen):
    stats = ops.OpStats()
    x = torch.randn(2, 4, 8, 8, generator=gen)
    ops.spiking_softmax(x, stats=stats)
    ops.spiking_layer_norm(x, 8, stats=stats)
    ops.spiking_activation("gelu", x, stats=stats)
    frame = stats.as_frame()
    for key in (
        "softmax.exp2",
        "softmax.reciprocal",
        "softmax.product.a",
        "layer_norm.square.a",
        "layer_norm.rsqrt",
        "layer_norm.product.a",
        "gelu",
    ):
        assert key in set(frame.key), key
    assert ((frame.firing_rate > 0) & (frame.firing_rate <= 1)).all()
    assert frame.set_index("key").loc["softmax.exp2", "elements"] == x.numel()
    assert frame.set_index("key").loc["softmax.reciprocal", "elements"] == x.numel() // 8
    assert stats.total("sops") > 0


# ---------------------------------------------------------------- bad input
def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="do not broadcast"):
        ops.spiking_mul(torch.ones(3, 4), torch.ones(5))
    with pytest.raises(ValueError, match="inner dimensions"):
        ops.spiking_matmul(torch.ones(3, 4), torch.ones(5, 2))
    with pytest.raises(ValueError, match="at least 2 dims"):
        ops.spiking_matmul(torch.ones(3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="normalized_shape"):
        ops.spiking_layer_norm(torch.ones(2, 5), 4)
    with pytest.raises(ValueError, match="mask"):
        ops.spiking_softmax(torch.ones(2, 5), mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="mode"):
        ops.spiking_mul(torch.ones(2), torch.ones(2), mode="fast")


@pytest.mark.parametrize(
    "call",
    [
        lambda x: ops.spiking_mul(x, torch.ones_like(x)),
        lambda x: ops.spiking_matmul(x.reshape(2, 2), torch.ones(2, 2)),
        lambda x: ops.spiking_softmax(x),
        lambda x: ops.spiking_layer_norm(x, 4),
        lambda x: ops.spiking_rms_norm(x),
        lambda x: ops.spiking_activation("gelu", x),
    ],
)
def test_nan_raises(call):
    x = torch.tensor([1.0, float("nan"), 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        call(x)


def test_out_of_range_is_clamped_and_counted():
    from mbe.ops.encoding import HEADROOM

    stats = ops.OpStats()
    reach = 1 + 2 * HEADROOM  # the range (-1, 1) and a tail of 4 widths on each side
    a = torch.tensor([0.5, 12.0, -20.0])
    with pytest.warns(mbe.DomainWarning, match="clamped"):
        out = ops.spiking_mul(a, torch.ones(3), ranges=((-1.0, 1.0), None), stats=stats)
    assert stats.sites["mul.a"].clamped == 2
    assert float(out[1]) == pytest.approx(reach, abs=1e-3) and float(out[2]) == pytest.approx(-reach, abs=1e-3)
    with pytest.warns(mbe.DomainWarning):
        ops.spiking_activation("gelu", torch.tensor([0.0, 50.0]), stats=stats)  # GELU domain ends at 10
    assert stats.sites["gelu"].clamped == 1


@pytest.mark.parametrize("timesteps", [8, 16])
def test_operands_beyond_the_range_use_its_headroom(gen, timesteps):
    """An operand beyond its calibrated range is encoded on a tail HEADROOM times as wide, not clamped: its
    error is at most HEADROOM times the in-range bound, inputs in range are encoded exactly as before, and event
    mode (per-element gains on the spike trains) computes what fused mode does."""
    from mbe.ops.encoding import HEADROOM, encode

    rng = (-1.0, 1.0)
    # the closed-form identity's bound alpha / (N 2^T), alpha = (hi - lo) / (2 (1 - 2^-T)); float32 rounding beside
    bound = 2.0 / (2 * (1 - 2.0**-timesteps)) / (8 * 2**timesteps) + 1e-6
    inside = torch.linspace(-1, 1, 101, dtype=torch.float64)
    outside = torch.cat([torch.linspace(1.001, 1 + 2 * HEADROOM, 200), -torch.linspace(1.001, 1 + 2 * HEADROOM, 200)])
    mixed = torch.cat([inside, outside.double()])
    enc_in, enc_mixed = encode(inside, rng, timesteps), encode(mixed, rng, timesteps)
    assert torch.equal(enc_mixed.decoded[: inside.numel()], enc_in.decoded)  # in range: unchanged
    assert enc_mixed.clamped == 0 and float(enc_in.gain) == 1.0
    err = (enc_mixed.decoded[inside.numel() :] - outside.double()).abs().max()
    assert float(err) <= HEADROOM * bound
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing clamped, nothing to warn about
        a = torch.randn(3, 6, 8, generator=gen) * 1.5  # a quarter of it beyond the range (-1, 1)
        b = torch.randn(3, 8, 5, generator=gen)
        fused = ops.spiking_matmul(a, b, ranges=(rng, (-1.0, 1.0)), timesteps=timesteps)
        event = ops.spiking_matmul(a, b, ranges=(rng, (-1.0, 1.0)), timesteps=timesteps, mode="event", budget_mb=0.2)
        close_in_scale(fused, event, a @ b)
        close_in_scale(
            ops.spiking_mul(a, a * 1.2, ranges=(rng, rng), timesteps=timesteps),
            ops.spiking_mul(a, a * 1.2, ranges=(rng, rng), timesteps=timesteps, mode="event"),
            a * a,
        )
    assert float((fused - a @ b).abs().max()) <= 8 * 2 * HEADROOM * bound * float(a.abs().max() + b.abs().max())


def test_no_warning_for_in_range_inputs(gen):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.spiking_softmax(torch.randn(3, 7, generator=gen), causal=False)
        ops.spiking_layer_norm(torch.randn(3, 7, generator=gen), 7)


# ---------------------------------------------------------------- event-mode memory bound
def test_event_tiles_respect_the_budget():
    for shape in [(12, 197, 64, 197), (1, 4096, 64, 4096), (96, 1024, 64, 1024)]:
        for budget in (16, 256):
            bb, ll, mm, need = event_matmul_tiles(*shape, slots=128, budget_mb=budget)
            assert need <= budget * 2**20 and bb >= 1 and ll >= 1 and mm >= 1
    assert event_mul_chunk(10**9, 128, 256) * 8 * (6 * 128 + 4) <= 256 * 2**20
    with pytest.raises(MemoryError, match="budget_mb"):
        event_matmul_tiles(1, 1, 10**6, 1, slots=128, budget_mb=1)


def test_spiking_max_pool_matches_torch():
    """max(a, b) = b + relu(a - b) with the ReLU neuron: within the neuron's error of torch's max pooling."""
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(0)) * 3
    stats = ops.OpStats()
    for k, s, p in [(3, 2, 1), (2, 2, 0)]:
        got = ops.spiking_max_pool2d(x, k, s, p, timesteps=16, stats=stats)
        ref = torch.nn.functional.max_pool2d(x, k, s, p)
        assert got.shape == ref.shape
        assert float((got - ref).abs().max()) < 1e-2 * float(x.abs().max())
    assert stats.sites["relu"].spikes > 0
    event = ops.spiking_max_pool2d(x, 3, 2, 1, timesteps=8, mode="event")
    assert torch.allclose(event, ops.spiking_max_pool2d(x, 3, 2, 1, timesteps=8), atol=1e-5)
    with pytest.raises(ValueError, match="expected \\[batch, channels, height, width\\]"):
        ops.spiking_max_pool2d(x[0], 3)


def test_times_power_of_two_is_ldexp_bit_for_bit():
    """The norms' row shifts: ``torch.ldexp`` exactly, for rows of any scale, exponents up to and beyond every
    dtype's range, zeros, infinities and subnormals."""
    from mbe.ops.nonlinear import times_power_of_two

    gen = torch.Generator().manual_seed(0)
    extremes = [-149, -10000, 10000, -150, 149, 150, 127, 128, -126, -127, 0, 1, -1, 24, -24, 1000, -1075, 1075]
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        scales = torch.exp2(torch.randint(-140, 120, (500, 1), generator=gen).float())
        x = (torch.randn(500, 16, generator=gen) * scales).to(dtype)
        x[0] = 0
        x[1, :4] = torch.tensor([float("inf"), -float("inf"), 1e-45, -0.0])
        e = torch.randint(-300, 300, (500, 1), generator=gen, dtype=torch.int32)
        e[: len(extremes), 0] = torch.tensor(extremes, dtype=torch.int32)
        expected, got = torch.ldexp(x, e), times_power_of_two(x, e)
        assert got.dtype == expected.dtype and torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num(), expected.nan_to_num()), dtype


# ---------------------------------------------------------------- one pass == step by step
def _in_one_pass(monkeypatch, op, a, b, **kw):
    """``op(a, b, **kw)`` with step-by-step encoding forbidden (so it must take the one pass), and its statistics."""
    from mbe.ops import products

    def no_encode(*args, **kwargs):
        raise AssertionError(f"{op.__name__} encoded an operand step by step instead of in one pass")

    stats = ops.OpStats()
    with monkeypatch.context() as m:
        m.setattr(products, "encode", no_encode)
        return op(a, b, stats=stats, **kw), stats


@pytest.mark.parametrize("compile_on", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_mul_in_one_pass_is_the_step_by_step_product(gen, monkeypatch, compile_on):
    """Fused mode with both operands inside their ranges runs one pass (``closed_form_product``; ``encode`` is not
    called); its product and statistics are those of encoding each operand and multiplying, bit for bit."""
    from mbe.ops.encoding import encode

    monkeypatch.setenv("MBE_COMPILE", "1" if compile_on else "0")
    a = torch.randn(6, 5, 33, generator=gen)
    cases = [  # (a, b, ranges)
        (a, torch.rand(6, 5, 1, generator=gen) + 0.5, ((-5.0, 5.0), (0.5, 1.5))),
        (a, a.flip(0) * 0.5, ((-5.0, 5.0), (-3.0, 3.0))),
        (a, a, ((-5.0, 5.0), (-5.0, 5.0))),  # a square: one operand's statistics
        (torch.rand(7, generator=gen), torch.rand(3, 1, generator=gen), ((0.0, 1.0), (-1.0, 2.0))),
    ]
    a_zeros = a.clone()
    a_zeros[0, :2] = 0.0
    cases.append((a_zeros, a_zeros, ((-5.0, 5.0), (-5.0, 5.0))))
    for timesteps in (8, 16, 32):
        for dtype in (torch.float32, torch.float64):
            for a, b, ranges in cases:
                a, b = a.to(dtype), (a.to(dtype) if b is a else b.to(dtype))
                for silent in (False, True):
                    out, stats = _in_one_pass(
                        monkeypatch, ops.spiking_mul, a, b, timesteps=timesteps, ranges=ranges, silent_zeros=silent
                    )
                    ea = encode(a, ranges[0], timesteps, silent_zeros=silent)
                    eb = encode(b, ranges[1], timesteps, silent_zeros=silent)
                    assert torch.equal(out, (ea.decoded * eb.decoded).to(dtype)) and out.dtype == dtype
                    assert stats.sites["mul.a"].spikes == int(ea.counts.sum()) > 0
                    assert ("mul.b" in stats.sites) == (b is not a)
                    if b is not a:
                        assert stats.sites["mul.b"].spikes == int(eb.counts.sum())
                    assert stats.sites["mul.a"].sops == int((ea.counts.double() * eb.counts.double()).sum())
                    assert stats.sites["mul.a"].clamped == 0


@pytest.mark.parametrize("compile_on", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_matmul_in_one_pass_is_the_step_by_step_product(gen, monkeypatch, compile_on):
    """The same for a matmul's operands (the matmul itself runs on the decoded operands as before)."""
    from mbe.ops.encoding import encode

    monkeypatch.setenv("MBE_COMPILE", "1" if compile_on else "0")
    q, k = torch.randn(2, 3, 5, 8, generator=gen), torch.randn(2, 3, 8, 5, generator=gen)
    p = torch.softmax(torch.randn(2, 3, 5, 5, generator=gen), -1)
    p[0, 0, 0, :2] = 0.0
    cases = [(q, k, ((-5.0, 5.0), (-5.0, 5.0))), (p, q, ((0.0, 1.0), (-5.0, 5.0))), (q[0, 0], k[:, :1], (None, None))]
    for timesteps in (8, 16, 32):
        for dtype in (torch.float32, torch.float64):
            for a, b, ranges in cases:
                a, b = a.to(dtype), b.to(dtype)
                ranges = tuple(r or (float(x.min()), float(x.max())) for r, x in zip(ranges, (a, b), strict=True))
                for silent in (False, True):
                    out, stats = _in_one_pass(
                        monkeypatch, ops.spiking_matmul, a, b, timesteps=timesteps, ranges=ranges, silent_zeros=silent
                    )
                    ea = encode(a, ranges[0], timesteps, silent_zeros=silent)
                    eb = encode(b, ranges[1], timesteps)
                    assert torch.equal(out, (ea.decoded @ eb.decoded).to(dtype)) and out.dtype == dtype
                    assert stats.sites["matmul.a"].spikes == int(ea.counts.sum()) > 0
                    assert stats.sites["matmul.b"].spikes == int(eb.counts.sum()) > 0
                    pairs = int((ea.counts.double().sum(-2) * eb.counts.double().sum(-1)).sum())
                    assert stats.sites["matmul.a"].sops == pairs


def test_mul_beyond_its_range_falls_back_to_the_step_by_step_encoding(gen):
    """An operand beyond its range (headroom tail) or beyond the tails (clamped) leaves the one-pass product to the
    step-by-step encoding: the same numbers as encoding each operand, and the clamp counted."""
    from mbe.ops.encoding import encode

    a = torch.randn(4, 9, generator=gen) * 3
    b = torch.rand(4, 1, generator=gen) + 0.5
    # beyond the range (a tail), beyond the tails (clamped), and inside it at T=50 (beyond the staggered identity
    # form's reach: the per-basis form, no one pass)
    cases = [(((-1.0, 1.0), (0.5, 1.5)), 16), (((-0.1, 0.1), (0.5, 1.5)), 16), (((-9.0, 9.0), (0.0, 2.0)), 50)]
    clamped = []
    for ranges, timesteps in cases:
        stats = ops.OpStats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = ops.spiking_mul(a, b, ranges=ranges, stats=stats, timesteps=timesteps)
            ea, eb = encode(a, ranges[0], timesteps), encode(b, ranges[1], timesteps)
        assert torch.equal(out, (ea.decoded * eb.decoded).float())
        assert stats.sites["mul.a"].clamped == ea.clamped
        clamped.append(ea.clamped)
    assert clamped[1] > 0 and clamped[2] == 0  # the narrow range clamps some


@pytest.mark.parametrize("compile_on", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_row_tails_in_one_pass_are_the_step_by_step_operators(gen, monkeypatch, compile_on):
    """Fused-mode norms and softmax read their steps after the row reduction (the rsqrt or reciprocal neuron, its
    Newton products, the product with the input, the shift and masks) in one pass (``_row_tail``; run eagerly with
    compiling off): output and statistics are the step-by-step path's, bit for bit. An operand beyond its range
    leaves the pass to the step-by-step path, which clamps and warns."""
    from mbe.ops import nonlinear

    monkeypatch.setenv("MBE_COMPILE", "1" if compile_on else "0")
    monkeypatch.setattr(nonlinear, "compile_enabled", lambda: True)  # the pass, compiled or not
    one_pass = nonlinear._fused_row_tail
    taken = []

    def counted(*args, **kw):
        out = one_pass(*args, **kw)
        taken.append(out is not None)
        return out

    def run(op, x, *args, use_pass, **kw):
        monkeypatch.setattr(nonlinear, "_fused_row_tail", counted if use_pass else lambda *a, **k: None)
        stats = ops.OpStats()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = op(x, *args, stats=stats, **kw)
        return out, {k: vars(v) for k, v in stats.sites.items()}, sum(w.category is mbe.DomainWarning for w in caught)

    x = torch.randn(4, 6, 24, generator=gen) * torch.exp(torch.randn(4, 6, 1, generator=gen))
    x[0, 0] = 0.0  # a zero row
    w, b = torch.randn(24, generator=gen), torch.randn(24, generator=gen)
    logits = torch.randn(2, 3, 7, 7, generator=gen) * 6
    logits[0, 0, 0] = -float("inf")  # a row with every key masked
    mask = torch.zeros(2, 1, 1, 7)
    mask[..., -2:] = torch.finfo(torch.float32).min
    cases = [  # (operator, input, arguments, keywords, whether the pass applies)
        (ops.spiking_layer_norm, x, (24, w, b), {}, True),
        (ops.spiking_softmax, logits, (), {"mask": mask}, True),
        (ops.spiking_layer_norm, x[1, :1], (24,), {"refine": 0}, True),  # one row, no Newton step
        (ops.spiking_rms_norm, x, (w,), {"refine": 2}, True),
        (ops.spiking_layer_norm, x, (24,), {"row_scaling": False, "centered_range": (-40.0, 40.0)}, True),
        (ops.spiking_softmax, logits.double(), (), {"causal": True, "refine": 2}, True),
        (ops.spiking_softmax, logits[1, 0], (), {"dim": 0, "refine": 0}, True),
        (ops.spiking_layer_norm, x, (24,), {"row_scaling": False, "centered_range": (-0.1, 0.1)}, False),
    ]
    if compile_on:  # the numbers of Inductor's code; each case compiles its own graphs (10-30 s each)
        cases = [cases[0], cases[1], cases[-1]]
    for timesteps in (16,) if compile_on else (8, 16, 32):
        for op, inp, args, kw, applies in cases:
            taken.clear()
            fused, fused_stats, fused_warned = run(op, inp, *args, use_pass=True, timesteps=timesteps, **kw)
            assert taken == [applies], (op.__name__, kw)
            steps, steps_stats, steps_warned = run(op, inp, *args, use_pass=False, timesteps=timesteps, **kw)
            assert torch.equal(fused, steps), (op.__name__, kw, timesteps)
            assert fused_stats == steps_stats, (op.__name__, kw, timesteps)
            assert fused_warned == steps_warned and (steps_warned > 0) == (not applies)


def test_softmax_of_empty_rows_is_empty():
    for shape in [(0, 5), (3, 0), (2, 0, 4)]:
        x = torch.randn(shape)
        for dim in (-1, 0):
            out = ops.spiking_softmax(x, dim=dim)
            assert out.shape == x.shape and torch.equal(out, torch.softmax(x, dim))


def test_power_of_two_is_torch_pow_and_ldexp_bit_for_bit():
    """Softmax's exponent shifts: ``power_of_two`` is ``torch.pow(2.0, e)`` for every integer exponent from below
    float64's subnormals to beyond its range, in every float dtype, and ``times_power_of_two_masked`` is
    ``torch.ldexp`` (then the masks)."""
    from mbe.ops.nonlinear import power_of_two, times_power_of_two_masked

    e = torch.arange(-1200, 1100, dtype=torch.float64)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        k = e.clamp(-60000, 60000).to(dtype)
        assert torch.equal(power_of_two(k, dtype), torch.pow(2.0, k)), dtype
        x = (torch.rand(e.shape, generator=torch.Generator().manual_seed(0)) + 1).to(dtype)
        mask = torch.zeros(e.shape, dtype=torch.bool)
        mask[::7] = True
        expected = torch.ldexp(x, k).masked_fill(mask, 0.0)
        assert torch.equal(times_power_of_two_masked(x, k, mask, None), expected), dtype


@pytest.mark.slow
def test_compiled_operators_are_the_eager_ones(monkeypatch):
    """Softmax (masks, causal, another dim, exponents far below the subnormals), LayerNorm, RMSNorm, products and
    matmuls: the compiled passes give the eager numbers and statistics, bit for bit, in float32, float64 and
    bfloat16."""

    def run(compile_on):
        monkeypatch.setenv("MBE_COMPILE", "1" if compile_on else "0")
        outs = []
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            g = torch.Generator().manual_seed(1)
            x = (torch.randn(3, 2, 7, 7, generator=g) * 8).to(dtype)
            x[0, 0, 0, :] = -float("inf")
            mask = torch.zeros(3, 1, 1, 7)
            mask[..., -2:] = torch.finfo(torch.float32).min
            h = torch.randn(3, 7, 16, generator=g).to(dtype)
            calls = [  # (operator, positional arguments, keyword arguments)
                (ops.spiking_softmax, (x,), {}),
                (ops.spiking_softmax, (x,), {"causal": True}),
                (ops.spiking_softmax, (x.float(),), {"mask": mask}),
                (ops.spiking_softmax, (x * 40,), {"dim": 1}),
                (ops.spiking_layer_norm, (h, 16), {}),
                (ops.spiking_rms_norm, (h,), {}),
                (ops.spiking_mul, (h, h[..., :1] + 2), {}),
                (ops.spiking_matmul, (h, h.transpose(-1, -2)), {}),
            ]
            for op, args, kw in calls:
                stats = ops.OpStats()
                outs.append((op(*args, timesteps=8, stats=stats, **kw), {k: vars(v) for k, v in stats.sites.items()}))
        return outs

    for (eager, eager_stats), (compiled, compiled_stats) in zip(run(False), run(True), strict=True):
        assert torch.equal(eager, compiled) and eager.dtype == compiled.dtype
        assert eager_stats == compiled_stats
