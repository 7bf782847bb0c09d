r"""Spiking softmax, LayerNorm, RMSNorm and activations, built on fitted neurons and spiking products.

Softmax (paper Eq. 13), over the last dim after an optional mask:

.. math::
    z = x - \max x,\quad y = z \log_2 e = k + f\ (k = \lfloor y \rfloor,\ f \in [0,1)),\quad
    e^{z} = 2^{f} \cdot 2^{k}\ (2^f \text{ by the exp2 neuron}),\\
    s = \sum e^{z} = M 2^{E}\ (M \in [0.5, 1)),\quad
    \mathrm{softmax} = \big(2^{f} \otimes \tfrac{1}{M}\big) \cdot 2^{k - E}\ (1/M \text{ by the reciprocal neuron})

where :math:`\otimes` is the spiking product of the two mantissas (both in [1, 2], so their
encoding ranges are fixed and need no calibration) and the powers of two are exponent shifts.

LayerNorm: :math:`\mu` and :math:`x - \mu` are linear (then, by default, each row is shifted by a power
of two so its largest magnitude is in [0.5, 1)); :math:`\sigma^2 = \tfrac1n \sum (x-\mu) \otimes (x-\mu)`;
:math:`\sigma^2 + \epsilon = M 2^{E}` with :math:`E` made even (:math:`M \in [0.5, 2)`);
:math:`(x - \mu)/\sigma = \big((x-\mu) \otimes \mathrm{rsqrt}(M)\big) 2^{-E/2}`; then :math:`\gamma, \beta`
as constants. RMSNorm is the same without the mean.

In fused mode, everything after a row's neuron (:math:`\mathrm{rsqrt}(M)` or :math:`1/M`: its Newton products,
the product with the big operand, the shift and the masks) is one compiled pass (:class:`RowTail`), with the
step-by-step path's numbers and statistics; the step-by-step path remains the reference and the fallback.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ..functions import get_function
from ..neuron.base import SpikingNeuron
from ..neuron.compiled import compile_enabled, compiled_call
from ..neuron.functional import check_finite
from ..stats import OpStats
from .encoding import (
    Range,
    check_args,
    encode,
    midpoint_and_half_width,
    pick_neuron,
    resolve_range,
    run_site_neuron,
)
from .products import (
    DEFAULT_BUDGET_MB,
    closed_form_product,
    one_pass_form,
    operands_inside,
    record_product,
    spiking_mul,
)

LOG2E = 1.0 / math.log(2.0)
#: encoding range for a mantissa in [1, 2] (with a margin for the neurons' own approximation error)
MANTISSA_RANGE = (0.9375, 2.0625)
#: rsqrt of a mantissa in [0.5, 2] lies in [0.707, 1.414]
RSQRT_RANGE = (0.6875, 1.4375)


#: ranges of the Newton refinement's intermediate products (all close to 1 once the neuron is close)
NEAR_ONE_RANGE = (0.875, 1.125)
HALF_TO_ONE_RANGE = (0.4375, 1.0625)
HALF_TO_TWO_RANGE = (0.4375, 2.0625)


@dataclass(frozen=True)
class Tail:
    """A neuron for one side beyond an activation's main neuron: its domain starts (or ends) at the main
    domain's edge, and it takes the inputs at least as far out as ``onset`` (the edge by default); inputs
    between the edge and ``onset`` stay clamped at the edge, which costs less there than the tail's error
    (:func:`mbe.convert.sites.tail_onset`)."""

    neuron: SpikingNeuron
    onset: Optional[float] = None


def newton_reciprocal(m, r, steps: int, mul):
    """``steps`` Newton steps for ``r ~ 1/m`` (m in [0.5, 1)): ``r <- r (2 - m r)``, every product by
    ``mul(a, b, ranges, label)``. Each step squares the relative error (``1 - m r``)."""
    for i in range(steps):
        mr = mul(m, r, (HALF_TO_ONE_RANGE, MANTISSA_RANGE), f"newton{i}.mr")
        r = mul(r, 2.0 - mr, (MANTISSA_RANGE, NEAR_ONE_RANGE), f"newton{i}.r")
    return r


def newton_rsqrt(m, y, steps: int, mul):
    """``steps`` Newton steps for ``y ~ 1/sqrt(m)`` (m in [0.5, 2)): ``y <- y (3 - m y^2) / 2``, every product by
    ``mul(a, b, ranges, label)``."""
    for i in range(steps):
        y2 = mul(y, y, (RSQRT_RANGE, RSQRT_RANGE), f"newton{i}.y2")
        my2 = mul(m, y2, (HALF_TO_TWO_RANGE, HALF_TO_TWO_RANGE), f"newton{i}.my2")
        y = mul(y, 1.5 - 0.5 * my2, (RSQRT_RANGE, NEAR_ONE_RANGE), f"newton{i}.y")
    return y


def _spiking_products(name: str, product_kw: dict):
    """A ``mul(a, b, ranges, label)`` for the Newton steps: :func:`spiking_mul` under ``"{name}.{label}"``."""
    return lambda a, b, ranges, label: spiking_mul(a, b, ranges=ranges, name=f"{name}.{label}", **product_kw)


def refine_reciprocal(m: Tensor, r: Tensor, steps: int, **product_kw) -> Tensor:
    """:func:`newton_reciprocal` with spiking products (``steps=0`` is the paper's plain neuron)."""
    return newton_reciprocal(m, r, steps, _spiking_products(product_kw.pop("name"), product_kw))


def refine_rsqrt(m: Tensor, y: Tensor, steps: int, **product_kw) -> Tensor:
    """:func:`newton_rsqrt` with spiking products."""
    return newton_rsqrt(m, y, steps, _spiking_products(product_kw.pop("name"), product_kw))


@functools.lru_cache(maxsize=None)
def products_made(newton, steps: int) -> tuple[tuple[str, tuple, bool], ...]:
    """The products ``newton(m, y, steps, mul)`` makes, in order, as ``(label, ranges, square)``: listed by running it
    on 0-d tensors with a ``mul`` that records instead of multiplying (``square``: ``b`` is ``a`` over one range, the
    product :func:`spiking_mul` reads once). Cached: one listing per Newton function and step count."""
    made = []

    def record(a, b, ranges, label):
        made.append((label, ranges, b is a and ranges[0] == ranges[1]))
        return torch.ones(())

    newton(torch.ones(()), torch.ones(()), steps, record)
    return tuple(made)


def _masked_positions(x: Tensor, mask: Optional[Tensor], causal: bool) -> Optional[Tensor]:
    """Boolean tensor (True = masked out) broadcast to ``x``, or ``None`` when nothing is masked."""
    masked = None
    if mask is not None:
        if mask.dtype == torch.bool:
            m = ~mask  # boolean masks follow torch's SDPA convention: True = take part
        else:
            m = mask <= torch.finfo(mask.dtype).min / 2
        try:
            masked = torch.broadcast_to(m, x.shape)
        except RuntimeError:
            raise ValueError(
                f"softmax: mask of shape {tuple(mask.shape)} does not broadcast to the input {tuple(x.shape)}"
            ) from None
    if causal:
        q, k = x.shape[-2], x.shape[-1]
        upper = torch.ones(q, k, dtype=torch.bool, device=x.device).triu(1 + k - q)
        masked = upper.expand(x.shape) if masked is None else (masked | upper)
    neg_inf = torch.isneginf(x)
    if bool(neg_inf.any()):
        masked = neg_inf if masked is None else (masked | neg_inf)
    return masked


def spiking_softmax(
    x: Tensor,
    dim: int = -1,
    mask: Optional[Tensor] = None,
    *,
    causal: bool = False,
    timesteps: int = 16,
    mode: str = "fused",
    n_basis: Optional[int] = None,
    stats: Optional[OpStats] = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    refine: int = 1,
    name: str = "softmax",
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
) -> Tensor:
    """Spiking softmax over ``dim`` (module docstring has the equations).

    Args:
        x: logits; ``-inf`` entries count as masked.
        mask: optional additive float mask (entries at or below ``finfo.min / 2`` are masked, other
            values are added to the logits) or boolean mask (``True`` = attend), broadcastable to ``x``.
        causal: also mask keys after each query (``x`` is ``[..., Lq, Lk]``, aligned at the end).
        timesteps, mode, n_basis, stats, budget_mb: as for :func:`mbe.ops.spiking_mul`; ``n_basis``
            applies to the exp2 and reciprocal neurons (default: their paper N, 8).
        refine: Newton steps on the reciprocal (two spiking products per row each; the project's
            addition, since the row sums' error is the reciprocal neuron's relative error);
            ``0`` is the paper's plain neuron.
    Returns:
        probabilities shaped like ``x``; masked positions are exactly 0, and a row with every
        position masked is all zeros (``torch.softmax`` would give NaN).
    """
    check_args(mode, timesteps, n_basis)
    if torch.isnan(x).any() or torch.isposinf(x).any():
        check_finite(torch.where(torch.isneginf(x), torch.zeros_like(x), x), name)
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"{name}: dim {dim} is out of range for an input of shape {tuple(x.shape)}")
    moved = dim not in (-1, x.dim() - 1)
    if moved:
        x = x.movedim(dim, -1)
        mask = mask.movedim(dim, -1) if mask is not None and mask.dim() == x.dim() else mask
    if mask is not None and mask.dtype != torch.bool:
        check_finite(torch.where(mask <= torch.finfo(mask.dtype).min / 2, torch.zeros_like(mask), mask), f"{name} mask")
    if x.numel() == 0:  # no logits in a row, or no rows: nothing to normalise
        out = torch.zeros_like(x)
        return out.movedim(-1, dim) if moved else out
    masked = _masked_positions(x, mask, causal)
    logits = x
    if mask is not None and mask.dtype != torch.bool:
        logits = x + torch.where(masked, torch.zeros_like(mask), mask) if masked is not None else x + mask
    if masked is not None:
        logits = logits.masked_fill(masked, float("-inf"))
    frac, k = compiled_call(split_exponent, logits)
    # masked entries have k = -10000, so 2^f * 2^k is exactly 0 in the sum; their product is zeroed below
    p = run_site_neuron(
        frac, "exp2", timesteps, n_basis=n_basis, key=f"{name}.exp2", stats=stats, neurons=neurons
    ).output
    # the row sum stays eager: a compiled sum may add in another order (a different float32 rounding)
    total = compiled_call(times_power_of_two_masked, p, k, masked).sum(-1, keepdim=True)
    mant, expo = torch.frexp(total)
    empty = total == 0
    mant = torch.where(empty, torch.full_like(mant, 0.5), mant)
    if mode == "fused":
        finish = (k - expo, masked, empty)
        out_dtype = torch.result_type(p, mant)
        out = _fused_row_tail(
            SOFTMAX_TAIL, p, mant, finish, MANTISSA_RANGE, out_dtype, timesteps, n_basis, refine, name, stats, neurons
        )
        if out is not None:
            return out.movedim(-1, dim) if moved else out
    inv_m = run_site_neuron(
        mant, "reciprocal", timesteps, n_basis=n_basis, key=f"{name}.reciprocal", stats=stats, neurons=neurons
    ).output
    inv_m = refine_reciprocal(
        mant,
        inv_m,
        refine,
        timesteps=timesteps,
        mode=mode,
        stats=stats,
        budget_mb=budget_mb,
        name=f"{name}.reciprocal",
        neurons=neurons,
    )
    prod = spiking_mul(
        p,
        inv_m,
        timesteps=timesteps,
        mode=mode,
        ranges=(MANTISSA_RANGE, MANTISSA_RANGE),
        stats=stats,
        budget_mb=budget_mb,
        name=f"{name}.product",
        neurons=neurons,
    )
    out = compiled_call(times_power_of_two_masked, prod, k - expo, masked, empty)
    return out.movedim(-1, dim) if moved else out


def power_of_two(e: Tensor, dtype: torch.dtype) -> Tensor:
    """:math:`2^e` for integer-valued ``e`` rounded once to ``dtype``: ``torch.pow(2.0, e)``'s values (exact where
    ``dtype`` holds them, 0 below its smallest subnormal, inf above its largest value), built from float64 exponent
    bits as a product of two exact powers (subnormal float64 ones included), so without a ``pow`` kernel and with the
    same numbers compiled or eager."""
    e = e.to(torch.int64)
    high = e.clamp(-1022, 1023)
    low = (e - high).clamp(-1022, 1023)

    def exact(v):  # 2^v for v in [-1022, 1023]: the biased exponent in a float64's bits
        return ((v + 1023) << 52).view(torch.float64)

    return (exact(high) * exact(low)).to(dtype)


def split_exponent(logits: Tensor) -> tuple[Tensor, Tensor]:
    r"""Softmax's exponent split (module docstring): :math:`y = (x - \max x) \log_2 e = k + f` per row of the last
    dim, returns ``(f, k)`` shaped like ``logits``; a masked entry (``-inf``) gets :math:`k = -10^4` (so
    :math:`2^f 2^k` is 0), and a row with every entry masked is taken relative to 0."""
    row_max = logits.amax(-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    y = (logits - row_max) * LOG2E
    y = torch.where(torch.isfinite(y), y, torch.full_like(y, -1e4))  # masked: exponent -> 2^-10000 = 0
    k = torch.floor(y)
    return (y - k).clamp(0.0, 1.0), k


def times_power_of_two_masked(x: Tensor, e: Tensor, *masks: Optional[Tensor]) -> Tensor:
    """``torch.ldexp(x, e)`` with 0 wherever one of ``masks`` (broadcastable booleans; ``None`` for none) is true:
    ``x`` times :func:`power_of_two` of ``e`` in ``e``'s floating dtype (the default dtype for integer ``e``), which
    is how ``torch.ldexp`` computes it (``x * torch.pow(2.0, e)``), so the same numbers."""
    out = x * power_of_two(e, e.dtype if e.is_floating_point() else torch.get_default_dtype())
    for mask in masks:
        if mask is not None:
            out = out.masked_fill(mask, 0.0)
    return out


def even_exponent_split(v: Tensor) -> tuple[Tensor, Tensor]:
    """``v = M 2^E`` with ``E`` even and ``M`` in [0.5, 2): ``torch.frexp``'s mantissa, doubled where its exponent is
    odd. Returns ``(M, E)``."""
    mant, expo = torch.frexp(v)
    odd = (expo % 2) != 0
    return torch.where(odd, mant * 2, mant), torch.where(odd, expo - 1, expo)


def _even_exponent_rsqrt(
    v: Tensor, timesteps: int, n_basis, key: str, stats, refine: int, mode: str, budget_mb: float, neurons
) -> tuple[Tensor, Tensor]:
    """``v = M 2^E`` with E even and ``M`` in [0.5, 2); returns (rsqrt(M) by the neuron, E / 2)."""
    mant, expo = even_exponent_split(v)
    rs = run_site_neuron(mant, "rsqrt", timesteps, n_basis=n_basis, key=key, stats=stats, neurons=neurons).output
    rs = refine_rsqrt(
        mant, rs, refine, timesteps=timesteps, mode=mode, stats=stats, budget_mb=budget_mb, name=key, neurons=neurons
    )
    return rs, expo // 2


#: the numbers in one :func:`closed_form_product` summary
_SUMMARY = 7


@dataclass(frozen=True)
class RowTail:
    """What follows a row reduction in a norm or a softmax, read in one pass (:func:`_row_tail`): a neuron on each
    row's mantissa (``function``), its Newton steps (``newton``), the product of the big operand with the result (the
    row value over ``row_range``, ``silent_zeros`` as the step-by-step path passes it) and ``finish(y, *args)`` (the
    exponent shift, and masks)."""

    function: str
    newton: object
    row_range: tuple[float, float]
    silent_zeros: bool
    finish: object


@functools.lru_cache(maxsize=None)
def _row_tail(spec: RowTail, identity_fn, refine: int, out_dtype: torch.dtype, n_finish: int):
    r"""A norm's or a softmax's steps after its row neuron, in fused mode, as one function of tensors: one compiled
    pass over the rows and the big operand instead of about forty operations and four compiled calls. ``refine``
    Newton steps on the neuron's output (``spec.newton``), the product of the big operand with the result, each
    product :func:`closed_form_product` of the identity neuron's closed form ``identity_fn`` (operands widened to
    float64, the result in the operands' dtype, as :func:`spiking_mul`), then ``spec.finish``. The same operations as
    the step-by-step path, so the same numbers (``tests/test_ops.py``). The neuron itself stays outside: its compiled
    readout is one graph per ``(N, T)`` bucket shared with every other site, where inside the pass each tail would
    compile its own ``N x T`` steps again (about a minute per graph on 2 cores).

    ``tail(big, mant, r, counts, ranges, *finish_args, *identity_args)``: ``big`` the operand widened to float64,
    ``mant`` each row's mantissa, ``r`` and ``counts`` the neuron's output and spike counts on it, ``ranges``
    ``[K, 2]`` float64, the (midpoint, half-width) of ``big``'s range then of :data:`_TAIL_RANGES`. Returns
    ``(y in out_dtype, summary)``: ``summary`` float64, the neuron's spike count, then one
    :func:`closed_form_product` summary per product, in the order made."""
    products = {
        (sq, dtype): closed_form_product(identity_fn, False, dtype, sq)
        for sq in (False, True)
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    }
    final = closed_form_product(identity_fn, spec.silent_zeros, out_dtype)

    def tail(big, mant, r, counts, ranges, *args):
        finish_args, identity_args = args[:n_finish], args[n_finish:]

        def scalars(rng):
            i = _TAIL_ROW[rng]
            return ranges[i, 0], ranges[i, 1]

        summaries = []

        def mul(a, b, rngs, label):
            square = b is a and rngs[0] == rngs[1]
            product = products[(square, torch.promote_types(a.dtype, b.dtype))]
            out, summary = product(
                a.to(torch.float64), b.to(torch.float64), *scalars(rngs[0]), *scalars(rngs[1]), *identity_args
            )
            summaries.append(summary)
            return out

        head = counts.sum(dtype=torch.float64).reshape(1)
        r = spec.newton(mant, r, refine, mul)
        y, summary = final(
            big, r.to(torch.float64), ranges[0, 0], ranges[0, 1], *scalars(spec.row_range), *identity_args
        )
        return spec.finish(y, *finish_args), torch.cat([head, *summaries, summary])

    return tail


#: the fixed encoding ranges of the fused tails' products
_TAIL_RANGES = (RSQRT_RANGE, HALF_TO_TWO_RANGE, NEAR_ONE_RANGE, MANTISSA_RANGE, HALF_TO_ONE_RANGE)
#: each fixed range's row in the ranges tensor (:func:`_ranges_tensor`)
_TAIL_ROW = {rng: i + 1 for i, rng in enumerate(_TAIL_RANGES)}


def _ranges_tensor(first: tuple[float, float], device) -> Tensor:
    """``[1 + len(_TAIL_RANGES), 2]`` float64: (midpoint, half-width) of ``first`` then of each fixed range, computed
    as :func:`mbe.ops.encoding.range_scalars` computes them."""
    rows = [midpoint_and_half_width(r) for r in (first, *_TAIL_RANGES)]
    return torch.tensor(rows, dtype=torch.float64, device=device)


def _split_summaries(summaries: list) -> list:
    """A flat list of :func:`closed_form_product` summaries, one list of floats per product."""
    return [summaries[i : i + _SUMMARY] for i in range(0, len(summaries), _SUMMARY)]


def _products_inside(identity, products, chunks) -> bool:
    """Whether every product's operands were inside their ranges (:func:`operands_inside`). ``products``: ``(key,
    (range_a, range_b), square, numel_a, numel_b, macs)``; ``chunks``: their summaries (:func:`_split_summaries`)."""
    return all(
        operands_inside(identity, ranges, chunk[3:]) for (_, ranges, *_), chunk in zip(products, chunks, strict=True)
    )


def _record_products(stats, identity, timesteps: int, products, chunks, device) -> None:
    """Record products read in one pass into ``stats`` as :func:`spiking_mul` records them."""
    slots = identity.prepared(torch.float64, device)[0].numel()
    for (key, _, square, numel_a, numel_b, macs), (spikes_a, spikes_b, pairs, *_) in zip(products, chunks, strict=True):
        record_product(stats, key, slots, timesteps, (numel_a, numel_b), (spikes_a, spikes_b), pairs, macs, square)


def _fused_row_tail(
    spec: RowTail,
    big: Tensor,
    mant: Tensor,
    finish_args: tuple,
    big_range,
    out_dtype,
    timesteps: int,
    n_basis,
    refine: int,
    name: str,
    stats,
    neurons,
) -> Optional[Tensor]:
    """``spec``'s steps after a row reduction (:class:`RowTail`) as the step-by-step path computes them, in one
    compiled pass after the row neuron (:func:`_row_tail`), its statistics recorded as that path records them; ``None``
    (nothing recorded) where the pass does not apply: compiling off, a GPU tensor, an identity neuron without the
    one-pass form, a mantissa outside its neuron's domain, or (seen after the pass) a product operand outside its
    range, which the step-by-step path clamps and reports. ``big``: the big operand (any float dtype; widened here), over
    ``big_range``; ``mant``: each row's mantissa."""
    identity = pick_neuron("identity", timesteps, None, neurons)
    form = one_pass_form(identity, big.device)
    if form is None or not compile_enabled() or big.is_cuda or big.numel() == 0:
        return None
    neuron = pick_neuron(spec.function, timesteps, n_basis, neurons)
    res, clamped = neuron.evaluate(mant)  # its own compiled graph, shared with every site of its (N, T) bucket
    if clamped:
        return None
    tail = _row_tail(spec, form[0], refine, out_dtype, len(finish_args))
    y, summary = compiled_call(
        tail,
        big.to(torch.float64),
        mant,
        res.output,
        res.spike_counts,
        _ranges_tensor(big_range, big.device),
        *finish_args,
        *form[1],
    )
    spikes, *summaries = summary.tolist()
    rows, key = mant.numel(), f"{name}.{spec.function}"
    products = [
        (f"{key}.{label}", ranges, square, rows, rows, rows)
        for label, ranges, square in products_made(spec.newton, refine)
    ]
    products.append((f"{name}.product", (big_range, spec.row_range), False, big.numel(), rows, big.numel()))
    chunks = _split_summaries(summaries)
    if not _products_inside(identity, products, chunks):
        return None
    if stats is not None:  # in the step-by-step path's order
        stats.add(
            key,
            function=spec.function,
            n_basis=neuron.n_basis,
            timesteps=timesteps,
            elements=rows,
            spikes=int(spikes),
            clamped=0,
        )
        _record_products(stats, identity, timesteps, products, chunks, big.device)
    return y


def times_power_of_two(x: Tensor, e: Tensor) -> Tensor:
    """``torch.ldexp(x, e)`` (:math:`x 2^e` rounded once) for integer exponents ``e`` broadcast along ``x`` (one per
    row), at the cost of a multiplication: the factors :math:`2^e` are built in float64 on ``e``'s own small shape,
    the product is exact in float64 for float32, float16 and bfloat16 ``x`` (whatever their exponents; a product
    below float64's range is below theirs too) and rounded once to ``x``'s dtype. ``torch.ldexp`` itself runs a
    broadcasting kernel about 15x slower than that; float64 ``x`` keeps it. Where :math:`2^e` itself underflows
    ``x``'s dtype (``e < -149`` in float32) while :math:`x 2^e` does not quite, ``torch.ldexp`` multiplies by that 0
    and this rounds :math:`x 2^e` once (e.g. 1.5 * 2^-150 -> 2^-149): not in the norms, whose shifts bring rows to or from
    magnitudes of order 1."""
    if x.dtype == torch.float64 or not x.is_floating_point():
        return torch.ldexp(x, e)
    # beyond +-1074 every float32 product over- or underflows as it does at the bound; clamped, 0 * 2^e and
    # inf * 2^e stay 0 and inf instead of becoming NaN
    factor = power_of_two(e.clamp(-1074, 1023), torch.float64)
    return (x.to(torch.float64) * factor).to(x.dtype)


#: a norm after its mean square: rsqrt of the mantissa, the product with the input, the shift by 2^(-E/2)
NORM_TAIL = RowTail("rsqrt", newton_rsqrt, RSQRT_RANGE, True, times_power_of_two)
#: a softmax after its row sum: reciprocal of the mantissa, the product with 2^f, the shift and the masks
SOFTMAX_TAIL = RowTail("reciprocal", newton_reciprocal, MANTISSA_RANGE, False, times_power_of_two_masked)


def _norm_dims(x: Tensor, normalized_shape, what: str) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) == 0 or tuple(x.shape[-len(shape) :]) != shape:
        raise ValueError(f"{what}: normalized_shape {shape} does not match the trailing dims of input {tuple(x.shape)}")
    return tuple(range(-len(shape), 0))


def _symmetric(x: Tensor, given: Range, what: str) -> tuple[float, float]:
    if given is not None:
        return resolve_range(x, given, what)
    bound = float(x.detach().abs().max()) if x.numel() else 1.0
    return resolve_range(x, (-bound, bound), what)


def _spiking_normalize(
    v: Tensor,
    dims: tuple[int, ...],
    eps: float,
    rng_given: Range,
    row_scaling: bool,
    timesteps: int,
    n_basis,
    refine: int,
    name: str,
    **kw,
) -> Tensor:
    """``v / sqrt(mean(v^2) + eps)`` over ``dims`` with spiking squares, rsqrt and product.

    With ``row_scaling`` each row is first shifted by a power of two so its largest magnitude lies in
    [0.5, 1) (an exponent shift, like the paper's softmax and rsqrt tricks): the identity encoding then
    always spans [-1, 1] at full resolution whatever the token's scale, and since the result is
    scale-invariant nothing needs shifting back (``eps`` is shifted with the row).
    """
    if row_scaling:
        _, row_e = torch.frexp(v.abs().amax(dims, keepdim=True))
        v = times_power_of_two(v, -row_e)
        eps_row = torch.ldexp(torch.full_like(v.sum(dims, keepdim=True), eps), -2 * row_e)
        rng = (-1.0, 1.0)
    else:
        eps_row = eps
        rng = _symmetric(v, rng_given, f"{name}.input")
    stats, mode, budget_mb, neurons = kw["stats"], kw["mode"], kw["budget_mb"], kw["neurons"]
    # v is an operand of both products: where products encode step by step (fused mode without the one pass),
    # encoded once for both
    step_by_step = (
        mode == "fused" and one_pass_form(pick_neuron("identity", timesteps, None, neurons), v.device) is None
    )
    encoded_v = encode(v, rng, timesteps, neurons=neurons, silent_zeros=True) if step_by_step else None
    # float64 from the squares to the rsqrt neuron, so event and fused feed it the same number
    # silent zeros: an exactly-zero entry (a whole zero row too) contributes exactly 0, as in the ANN
    mean_sq = spiking_mul(
        v,
        v,
        ranges=(rng, rng),
        name=f"{name}.square",
        timesteps=timesteps,
        out_dtype=torch.float64,
        silent_zeros=True,
        encoded_a=encoded_v,
        **kw,
    ).mean(dims, keepdim=True)
    if mode == "fused" and not step_by_step:
        mant, expo = even_exponent_split(mean_sq + eps_row)
        fused = _fused_row_tail(
            NORM_TAIL, v, mant, (-(expo // 2),), rng, v.dtype, timesteps, n_basis, refine, name, stats, neurons
        )
        if fused is not None:
            return fused
    rs, half_e = _even_exponent_rsqrt(
        mean_sq + eps_row, timesteps, n_basis, f"{name}.rsqrt", stats, refine, mode, budget_mb, neurons
    )
    return times_power_of_two(
        spiking_mul(
            v,
            rs,
            ranges=(rng, RSQRT_RANGE),
            name=f"{name}.product",
            timesteps=timesteps,
            out_dtype=v.dtype,
            silent_zeros=True,
            encoded_a=encoded_v,
            **kw,
        ),
        -half_e,
    )


def spiking_layer_norm(
    x: Tensor,
    normalized_shape: Union[int, Sequence[int]],
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    centered_range: Range = None,
    row_scaling: bool = True,
    n_basis: Optional[int] = None,
    stats: Optional[OpStats] = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    refine: int = 1,
    name: str = "layer_norm",
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
) -> Tensor:
    r"""Spiking LayerNorm (module docstring); returns a tensor shaped like ``x``.

    Args:
        normalized_shape, weight, bias, eps: as ``torch.nn.functional.layer_norm``.
        row_scaling: shift each row by a power of two before encoding (the project's addition; see
            :func:`_spiking_normalize`); ``False`` encodes :math:`x - \mu` over one range per site.
        centered_range: with ``row_scaling=False``, the calibrated encoding range of :math:`x - \mu`
            (default: symmetric around 0 at the input's own largest magnitude).
        refine: Newton steps on the rsqrt neuron (three spiking products per row each; ``0`` = the paper).
        timesteps, mode, n_basis, stats, budget_mb, neurons: as for the other operators.
    """
    check_args(mode, timesteps, n_basis)
    check_finite(x, name)
    dims = _norm_dims(x, normalized_shape, name)
    xc = x - x.mean(dims, keepdim=True)
    y = _spiking_normalize(
        xc,
        dims,
        eps,
        centered_range,
        row_scaling,
        timesteps,
        n_basis,
        refine,
        name,
        mode=mode,
        stats=stats,
        budget_mb=budget_mb,
        neurons=neurons,
    )
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def spiking_rms_norm(
    x: Tensor,
    weight: Optional[Tensor] = None,
    eps: float = 1e-6,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    input_range: Range = None,
    row_scaling: bool = True,
    n_basis: Optional[int] = None,
    stats: Optional[OpStats] = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    refine: int = 1,
    name: str = "rms_norm",
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
) -> Tensor:
    """Spiking RMSNorm over the last dim (Llama): ``x / sqrt(mean(x^2) + eps) * weight``; arguments as
    :func:`spiking_layer_norm` (``input_range``: the calibrated encoding range of ``x``)."""
    check_args(mode, timesteps, n_basis)
    check_finite(x, name)
    y = _spiking_normalize(
        x,
        (-1,),
        eps,
        input_range,
        row_scaling,
        timesteps,
        n_basis,
        refine,
        name,
        mode=mode,
        stats=stats,
        budget_mb=budget_mb,
        neurons=neurons,
    )
    return y * weight if weight is not None else y


def spiking_activation(
    name: str,
    x: Tensor,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    n_basis: Optional[int] = None,
    input_range: Range = None,
    stats: Optional[OpStats] = None,
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
    tails: Sequence[Union[Tail, SpikingNeuron]] = (),
) -> Tensor:
    """One fitted neuron per activation: ``"gelu"``, ``"gelu_tanh"``, ``"silu"``, ``"tanh"``,
    ``"sigmoid"`` or any registered function. ``input_range`` (calibrated) clamps inputs first,
    counting them as saturated; inputs outside the neuron's fitted domain are clamped and counted too.
    ``mode="event"`` materialises the spike trains (same result).

    ``tails``: neurons (or :class:`Tail` objects) for inputs beyond the main neuron's domain, each on an interval that
    starts (or ends) at one of its edges: an input below the main domain's ``lo`` takes the tail ending at ``lo``
    (clamped to that tail's own domain), one above ``hi`` the tail starting at ``hi``; a :class:`Tail` takes only
    the inputs beyond its ``onset``. Their spikes are recorded under ``"{name}.tail"``; the inputs they take
    still count as clamped by the main neuron."""
    check_args(mode, timesteps, n_basis)
    check_finite(x, f"activation {name!r}")
    pre = 0
    if input_range is not None:
        lo, hi = resolve_range(x, input_range, f"activation {name!r}")
        pre = int(((x < lo) | (x > hi)).sum())
        x = x.clamp(lo, hi)
    res = run_site_neuron(
        x, name, timesteps, n_basis=n_basis, key=name, stats=stats, return_spikes=(mode == "event"), neurons=neurons
    )
    if stats is not None and pre:
        stats.sites[name].clamped += pre
    out = res.output
    if tails:
        main_lo, main_hi = pick_neuron(name, timesteps, n_basis, neurons).domain
        for tail in tails:
            tail = tail if isinstance(tail, Tail) else Tail(tail)
            t_lo, t_hi = tail.neuron.domain
            onset = tail.onset
            if t_hi == main_lo and (onset is None or t_lo <= onset <= t_hi):
                beyond = x < (main_lo if onset is None else onset)
            elif t_lo == main_hi and (onset is None or t_lo <= onset <= t_hi):
                beyond = x > (main_hi if onset is None else onset)
            else:
                raise ValueError(
                    f"activation {name!r}: tail neuron domain {tail.neuron.domain} (onset {onset}) does not start "
                    f"or end at the main neuron's domain {(main_lo, main_hi)}, or its onset lies outside it"
                )
            if bool(beyond.any()):
                t_res = run_site_neuron(
                    x[beyond], name, timesteps, key=f"{name}.tail", stats=stats, neurons={name: tail.neuron}
                )
                out = out.masked_scatter(beyond, t_res.output.to(out.dtype))
    return out


def spiking_max_pool2d(
    x: Tensor,
    kernel_size: int,
    stride: Optional[int] = None,
    padding: int = 0,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    n_basis: Optional[int] = None,
    stats: Optional[OpStats] = None,
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
) -> Tensor:
    """``torch.nn.functional.max_pool2d`` with spiking comparisons: ``max(a, b) = b + relu(a - b)``,
    the ReLU by its fitted neuron, reduced pairwise over each window (``k*k - 1`` neurons per output).
    Each round's differences are divided by a power of two (exact) when they exceed the ReLU neuron's
    domain, and the result multiplied back: ReLU is positively homogeneous, so nothing saturates.

    Shapes: ``x [B, C, H, W]`` -> ``[B, C, H_out, W_out]``. Padding acts like ``-inf`` (the window's
    own values win).
    """
    check_args(mode, timesteps, n_basis)
    check_finite(x, "max_pool2d")
    if x.dim() != 4:
        raise ValueError(f"spiking_max_pool2d: expected [batch, channels, height, width], got shape {tuple(x.shape)}")
    k, s = int(kernel_size), int(stride if stride is not None else kernel_size)
    b, c, h, w = x.shape
    low = float(x.min()) if x.numel() else 0.0
    xp = torch.nn.functional.pad(x, (padding,) * 4, value=low)  # never above a real value: like -inf here
    patches = torch.nn.functional.unfold(xp.reshape(b * c, 1, *xp.shape[-2:]), k, stride=s)  # [B*C, k*k, L]
    h_out = (h + 2 * padding - k) // s + 1
    w_out = (w + 2 * padding - k) // s + 1
    vals = list(patches.unbind(1))
    override = (neurons or {}).get("relu")
    bound = min(abs(v) for v in (override.domain if override is not None else get_function("relu").domain))
    while len(vals) > 1:
        nxt = []
        for i in range(0, len(vals) - 1, 2):
            a_, b_ = vals[i], vals[i + 1]
            diff = a_ - b_
            # relu(2^k z) = 2^k relu(z): scale by a power of two (exact) so differences fit the domain
            span = float(diff.abs().max()) if diff.numel() else 0.0
            scale = 2.0 ** math.ceil(math.log2(span / bound)) if span > bound else 1.0
            nxt.append(
                b_
                + scale
                * spiking_activation(
                    "relu", diff / scale, timesteps=timesteps, mode=mode, n_basis=n_basis, stats=stats, neurons=neurons
                )
            )
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0].reshape(b, c, h_out, w_out)


def spiking_swiglu(
    gate: Tensor,
    up: Tensor,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    ranges: tuple[Range, Range] = (None, None),
    stats: Optional[OpStats] = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
) -> Tensor:
    """Llama's gated MLP core ``silu(gate) * up``: the SiLU neuron, then a spiking product."""
    act = spiking_activation("silu", gate, timesteps=timesteps, mode=mode, stats=stats)
    return spiking_mul(
        act, up, timesteps=timesteps, mode=mode, ranges=ranges, stats=stats, budget_mb=budget_mb, name="swiglu.product"
    )
