r"""Spiking products of two activation tensors (paper Eq. 9-12): elementwise and batched matmul.

Both operands are encoded by the identity neuron (:func:`mbe.ops.encoding.encode`):
:math:`\hat a = A_0 + \sum_k D^a_k S^a_k`, :math:`\hat b = B_0 + \sum_j D^b_j S^b_j`. Then

.. math::
    \hat a \hat b = A_0 B_0 + A_0 \sum_j D^b_j S^b_j + B_0 \sum_k D^a_k S^a_k
                    + \sum_{k,j} \underbrace{D^a_k D^b_j}_{D_{kj}} \underbrace{S^a_k S^b_j}_{S_{kj}}

with the intensity matrix :math:`D` (``[NT, NT]``, precomputed) and the binary coincidence matrix
:math:`S`. Two execution modes compute the same number:

``event``
    builds the binary spike trains and accumulates :math:`\sum_{k,j} D_{kj} S_{kj}` pair by pair
    (organised as :math:`\sum_k S^a_k \cdot (D_{k\cdot} S^b)`), tiled so that no tile needs more than
    ``budget_mb``; it counts every spike pair as one synaptic operation.
``fused``
    multiplies the decoded values, :math:`\hat a \hat b` (or :math:`\hat a \hat b` as a matmul), and
    counts the same spike pairs from per-element spike counts.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Optional

import torch
from torch import Tensor

from ..neuron.base import SpikingNeuron
from ..neuron.compiled import compiled_call
from ..neuron.ladder import staggered_readout
from ..stats import OpStats
from .encoding import (
    Encoded,
    Range,
    check_args,
    decode_closed_form,
    encode,
    in_closed_form,
    pick_neuron,
    range_scalars,
    resolve_range,
    scaled_extremes,
    warn_saturation,
)

DEFAULT_BUDGET_MB = 256.0


def _record(stats: Optional[OpStats], key: str, slots: int, timesteps: int, n_elements: int, spikes, clamped) -> None:
    """One operand's encoding into ``stats``: ``slots`` = its identity neuron's ``N T``."""
    if stats is not None:
        stats.add(
            key,
            function="identity",
            n_basis=slots // timesteps,
            timesteps=timesteps,
            elements=n_elements,
            spikes=int(spikes),
            clamped=clamped,
        )


def operands_inside(identity: SpikingNeuron, ranges: tuple, extremes) -> bool:
    """Whether both operands of a product read in one pass were inside their ranges (:func:`in_closed_form`), so the
    pass read them as :func:`encode` would: ``extremes`` = ``[min a, max a, min b, max b]`` from its summary."""
    a_min, a_max, b_min, b_max = extremes
    return all(
        in_closed_form(identity, *scaled_extremes(rng, lo, hi))
        for rng, lo, hi in ((ranges[0], a_min, a_max), (ranges[1], b_min, b_max))
    )


def record_product(
    stats: OpStats, key: str, slots: int, timesteps: int, numels: tuple, spikes: tuple, pairs, macs: int, square: bool
) -> None:
    """A product read in one pass (:func:`closed_form_product`) into ``stats``: each operand's spikes under
    ``"{key}.a"`` and ``"{key}.b"`` (``a`` only for a square), nothing clamped, and the spike pairs with the exact
    product's ``macs``; ``numels`` and ``spikes`` per operand, ``slots`` = the identity neuron's ``N T``."""
    _record(stats, f"{key}.a", slots, timesteps, numels[0], spikes[0], 0)
    if not square:
        _record(stats, f"{key}.b", slots, timesteps, numels[1], spikes[1], 0)
    stats.add_sops(f"{key}.a", int(pairs), macs)


def _closed_form_operand(x: Tensor, mid: Tensor, half: Tensor, readout_fn, args: tuple, silent_zeros: bool):
    """:func:`encode`'s decoded values and spike counts (float64) of an operand inside its range, in closed form."""
    decoded, counts = decode_closed_form(x, mid, half, readout_fn, args)
    counts = counts.to(torch.float64)
    if silent_zeros:  # as encode: exact zeros emit nothing and decode to 0
        keep = (x != 0).to(torch.float64)
        decoded, counts = decoded * keep, counts * keep
    return decoded, counts


@functools.lru_cache(maxsize=None)
def closed_form_product(readout_fn, silent_zeros: bool, out_dtype: Optional[torch.dtype], square: bool = False):
    r"""A whole fused product as one function of its operands, for an identity neuron read in closed form
    (``readout_fn(z, *args)``, :meth:`~mbe.neuron.base.SpikingNeuron.ladder`) with both operands inside their ranges:
    ``product(a, b, mid_a, half_a, mid_b, half_b, *args)`` returns ``(result, summary)``, ``summary`` =
    ``[spikes of a, spikes of b, spike pairs, min a, max a, min b, max b]`` (float64; spike sums are integers below
    2^53, so exact).

    ``out_dtype`` given: the elementwise product :math:`\hat a \hat b` in ``out_dtype`` (broadcast shape), pairs
    :math:`\sum c^a c^b`. ``None``: the operands of a matmul, ``result = (\hat a, \hat b)`` (float64; the caller
    multiplies them), pairs :math:`\sum_{batch, d} (\sum_l c^a_{ld}) (\sum_m c^b_{dm})`, and ``silent_zeros``
    for ``a`` only. ``square``: ``b`` is ``a`` over the same range (read once). The same operations as
    :func:`encode` then the product and its statistics, so the same numbers; compiled
    (:func:`mbe.neuron.compiled.compiled_call`) one pass over the operands instead of about fifteen operations.
    One function per key (cached), so one compiled graph each."""

    def product(a, b, mid_a, half_a, mid_b, half_b, *args):
        da, ca = _closed_form_operand(a, mid_a, half_a, readout_fn, args, silent_zeros)
        if square:  # b is a, over the same range: read once
            db, cb = da, ca
        else:
            db, cb = _closed_form_operand(b, mid_b, half_b, readout_fn, args, silent_zeros and out_dtype is not None)
        if out_dtype is None:
            result, pairs = (da, db), (ca.sum(-2) * cb.sum(-1)).sum()
        else:
            result, pairs = (da * db).to(out_dtype), (ca * cb).sum()
        extremes = [v.to(torch.float64) for x in (a, b) for v in (x.amin(), x.amax())]
        return result, torch.stack([ca.sum(), cb.sum(), pairs, *extremes])

    return product


def one_pass_form(neuron: SpikingNeuron, device) -> Optional[tuple]:
    """The identity neuron's closed form ``(readout, args)`` when products take the one pass
    (:func:`closed_form_product`): the staggered form only. With the per-basis ladder (N not a power of two, or T
    beyond the staggered form's reach, :func:`~mbe.neuron.binary_identity`) the one pass measured slower than
    encoding each operand once (Inductor recomputes the N quotients in several of its loops), so those products
    encode step by step."""
    form = neuron.ladder(torch.float64, device)
    return form if form is not None and form[0] is staggered_readout else None


def _closed_form_pass(a, b, ra, rb, timesteps, n_basis, neurons, silent_zeros, out_dtype, stats, name, macs):
    """A fused product in one compiled pass (:func:`closed_form_product`; ``out_dtype=None``: a matmul's operands),
    its statistics recorded, or ``None`` (nothing recorded) where that does not apply: an identity neuron without a
    closed form, an empty or non-float operand, or an operand beyond its range or not finite (seen after the pass;
    the caller then encodes step by step, and ``encode`` raises on what is bad input)."""
    if not (torch.is_floating_point(a) and torch.is_floating_point(b)):
        return None
    neuron = pick_neuron("identity", timesteps, n_basis, neurons)
    form = one_pass_form(neuron, a.device)
    if form is None or a.numel() == 0 or b.numel() == 0:
        return None
    readout_fn, args = form
    square = b is a and rb == ra and out_dtype is not None
    fn = closed_form_product(readout_fn, silent_zeros, out_dtype, square)
    # widened first, as encode does (a float32 operand makes Inductor tile the float64 body twice as wide)
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    result, summary = compiled_call(fn, a64, b64, *range_scalars(ra, a.device), *range_scalars(rb, a.device), *args)
    spikes_a, spikes_b, pairs, *extremes = summary.tolist()
    if not operands_inside(neuron, (ra, rb), extremes):
        return None
    if stats is not None:
        slots = neuron.prepared(torch.float64, a.device)[0].numel()
        record_product(stats, name, slots, timesteps, (a.numel(), b.numel()), (spikes_a, spikes_b), pairs, macs, square)
    return result


def _pairs_elementwise(ca: Tensor, cb: Tensor) -> int:
    return int((ca.double() * cb.double()).sum())


def spiking_mul(
    a: Tensor,
    b: Tensor,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    ranges: tuple[Range, Range] = (None, None),
    n_basis: Optional[int] = None,
    stats: Optional[OpStats] = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    name: str = "mul",
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
    out_dtype: Optional[torch.dtype] = None,
    silent_zeros: bool = False,
    encoded_a: Optional[Encoded] = None,
) -> Tensor:
    """Elementwise spiking product ``a * b`` (broadcasting like ``torch.mul``).

    Args:
        a, b: float tensors with broadcastable shapes.
        timesteps: T of the identity neuron.
        mode: ``"fused"`` or ``"event"``.
        ranges: encoding range per operand; ``None`` uses the operand's own (min, max).
        n_basis: identity neuron's N (default 8).
        stats: an :class:`OpStats` to record spikes, spike-pair SOPs and saturation into
            (keys ``"<name>.a"``, ``"<name>.b"``).
        budget_mb: event mode's memory budget per tile.
        neurons: optional ``{"identity": neuron}`` replacing the shipped identity neuron (e.g. an FS one).
        out_dtype: result dtype (default: the operands' promoted dtype; the arithmetic is float64).
        silent_zeros: exact zeros in either operand emit no spikes and decode to exactly 0, so their
            products are exactly 0 (e.g. an all-zero row into a norm).
        encoded_a: ``encode(a, ranges[0], timesteps, n_basis=n_basis, neurons=neurons, silent_zeros=silent_zeros)``
            from the caller, so that an operand of several products is encoded once where products encode step by
            step (fused mode without :func:`one_pass_form`); the caller keeps it consistent with ``a``.
    Returns:
        tensor of the broadcast shape.
    """
    check_args(mode, timesteps, n_basis)
    try:
        shape = torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(f"{name}: operand shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") from None
    ra = resolve_range(a, ranges[0], f"{name}.a")
    rb = resolve_range(b, ranges[1], f"{name}.b")
    if mode == "fused":
        out_dtype = out_dtype or torch.result_type(a, b)
        fast = _closed_form_pass(
            a, b, ra, rb, timesteps, n_basis, neurons, silent_zeros, out_dtype, stats, name, shape.numel()
        )
        if fast is not None:
            return fast
        ea = encoded_a or encode(a, ra, timesteps, n_basis=n_basis, neurons=neurons, silent_zeros=silent_zeros)
        eb = (
            ea
            if (b is a and rb == ra)
            else encode(b, rb, timesteps, n_basis=n_basis, neurons=neurons, silent_zeros=silent_zeros)
        )
        out = (ea.decoded * eb.decoded).to(out_dtype)
        _finish(
            stats,
            name,
            ea,
            eb,
            timesteps,
            a,
            b,
            sops=_pairs_elementwise(ea.counts, eb.counts),
            ra=ra,
            rb=rb,
            macs=shape.numel(),
        )
        return out
    out = _event_mul(
        a.expand(shape), b.expand(shape), ra, rb, timesteps, n_basis, stats, budget_mb, name, neurons, silent_zeros
    )
    return out.to(out_dtype or torch.result_type(a, b))


def _matmul_macs(batch, a: Tensor, b: Tensor) -> int:
    return torch.Size(batch).numel() * a.shape[-2] * a.shape[-1] * b.shape[-1]


def _finish(stats, name, ea, eb, timesteps, a, b, sops, ra, rb, macs=0):
    warn_saturation(f"{name}.a", ea.clamped, ra)
    if eb is not ea:
        warn_saturation(f"{name}.b", eb.clamped, rb)
    if stats is not None:
        _record(stats, f"{name}.a", ea.intensity.numel(), timesteps, a.numel(), ea.counts.sum(), ea.clamped)
        if eb is not ea:
            _record(stats, f"{name}.b", eb.intensity.numel(), timesteps, b.numel(), eb.counts.sum(), eb.clamped)
        stats.add_sops(f"{name}.a", sops, macs)


def event_mul_chunk(numel: int, slots: int, budget_mb: float) -> int:
    """Elements per chunk in event mode: two float64 spike trains ``[K]`` per element (with simulate's
    transient copies), ``D S^b`` and the output, within the budget (at least one element)."""
    per_elem = 8 * (6 * slots + 4)  # float64
    return max(1, min(numel, int(budget_mb * 2**20 // per_elem)))


def _event_mul(a, b, ra, rb, timesteps, n_basis, stats, budget_mb, name, neurons, silent_zeros=False):
    shape = a.shape
    af, bf = a.reshape(-1), b.reshape(-1)
    numel = af.numel()
    k = encode(af[:1], ra, timesteps, n_basis=n_basis, neurons=neurons).intensity.numel()
    chunk = event_mul_chunk(numel, k, budget_mb)
    out = torch.empty(numel, dtype=torch.float64)
    sums = {"a_spikes": 0, "b_spikes": 0, "a_sat": 0, "b_sat": 0, "pairs": 0}
    for start in range(0, numel, chunk):
        sl = slice(start, start + chunk)
        ea = encode(
            af[sl], ra, timesteps, n_basis=n_basis, return_spikes=True, neurons=neurons, silent_zeros=silent_zeros
        )
        eb = encode(
            bf[sl], rb, timesteps, n_basis=n_basis, return_spikes=True, neurons=neurons, silent_zeros=silent_zeros
        )
        sa, sb = ea.spikes, eb.spikes  # [K, c] binary
        ga, gb = ea.weighted_spikes(), eb.weighted_spikes()  # g S: a tail's spikes carry its gain
        dmat = ea.intensity[:, None] * eb.intensity[None, :]  # D_kj, [K, K]
        pair = (ga * (dmat @ gb)).sum(0)  # sum_k g^a S^a_k sum_j D_kj g^b S^b_j
        lin = ea.const * (eb.intensity @ gb) + eb.const * (ea.intensity @ ga) + ea.const * eb.const
        out[sl] = pair + lin
        sums["pairs"] += int((sa * sb.sum(0, keepdim=True)).sum())  # every coincident spike pair
        sums["a_spikes"] += int(sa.sum())
        sums["b_spikes"] += int(sb.sum())
        sums["a_sat"] += ea.clamped
        sums["b_sat"] += eb.clamped
    warn_saturation(f"{name}.a", sums["a_sat"], ra)
    warn_saturation(f"{name}.b", sums["b_sat"], rb)
    if stats is not None:
        n = k // timesteps
        stats.add(
            f"{name}.a",
            function="identity",
            n_basis=n,
            timesteps=timesteps,
            elements=numel,
            spikes=sums["a_spikes"],
            clamped=sums["a_sat"],
            sops=sums["pairs"],
        )
        stats.add_sops(f"{name}.a", 0, macs=a.numel())
        stats.add(
            f"{name}.b",
            function="identity",
            n_basis=n,
            timesteps=timesteps,
            elements=numel,
            spikes=sums["b_spikes"],
            clamped=sums["b_sat"],
        )
    return out.reshape(shape)


def spiking_matmul(
    a: Tensor,
    b: Tensor,
    *,
    timesteps: int = 16,
    mode: str = "fused",
    ranges: tuple[Range, Range] = (None, None),
    n_basis: Optional[int] = None,
    stats: Optional[OpStats] = None,
    budget_mb: float = DEFAULT_BUDGET_MB,
    name: str = "matmul",
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
    out_dtype: Optional[torch.dtype] = None,
    silent_zeros: bool = False,
) -> Tensor:
    """Spiking ``a @ b`` for two activation tensors, e.g. ``Q @ K^T`` and ``attn @ V`` with heads.

    Args:
        a: ``[..., L, D]``; b: ``[..., D, M]``; batch dims broadcast like ``torch.matmul``.
        Others as :func:`spiking_mul`. SOPs count every coincident spike pair (``a[l, d]`` slot with
        ``b[d, m]`` slot) over the contraction.
        silent_zeros: exact zeros in ``a`` emit no spikes and contribute exactly 0 (masked attention
            probabilities: a padded key changes nothing).
    Returns:
        ``[..., L, M]``.
    """
    check_args(mode, timesteps, n_basis)
    if a.dim() < 2 or b.dim() < 2:
        raise ValueError(
            f"{name}: both operands need at least 2 dims ([..., L, D] @ [..., D, M]), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"{name}: inner dimensions differ: a is {tuple(a.shape)}, b is {tuple(b.shape)} "
            f"(a.shape[-1] must equal b.shape[-2])"
        )
    try:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ValueError(f"{name}: batch dims of {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") from None
    ra = resolve_range(a, ranges[0], f"{name}.a")
    rb = resolve_range(b, ranges[1], f"{name}.b")
    if mode == "fused":
        out_dtype = out_dtype or torch.result_type(a, b)
        macs = _matmul_macs(batch, a, b)
        fast = _closed_form_pass(a, b, ra, rb, timesteps, n_basis, neurons, silent_zeros, None, stats, name, macs)
        if fast is not None:
            return (fast[0] @ fast[1]).to(out_dtype)
        ea = encode(a, ra, timesteps, n_basis=n_basis, neurons=neurons, silent_zeros=silent_zeros)
        eb = encode(b, rb, timesteps, n_basis=n_basis, neurons=neurons)
        out = (ea.decoded @ eb.decoded).to(out_dtype)
        # spike pairs: sum over batch and d of (spikes of a's column d) * (spikes of b's row d)
        sops = int((ea.counts.sum(-2) * eb.counts.sum(-1)).sum())  # broadcasts over batch dims; float64: exact
        _finish(stats, name, ea, eb, timesteps, a, b, sops=sops, ra=ra, rb=rb, macs=macs)
        return out
    a3 = a.expand(*batch, *a.shape[-2:]).reshape(-1, *a.shape[-2:])
    b3 = b.expand(*batch, *b.shape[-2:]).reshape(-1, *b.shape[-2:])
    out = _event_matmul(a3, b3, ra, rb, timesteps, n_basis, stats, budget_mb, name, neurons, silent_zeros)
    return out.reshape(*batch, a.shape[-2], b.shape[-1]).to(out_dtype or torch.result_type(a, b))


def _tiles(total: int, size: int):
    return [slice(s, min(s + size, total)) for s in range(0, total, size)]


def event_matmul_tiles(
    batch: int, rows: int, inner: int, cols: int, slots: int, budget_mb: float, name: str = "matmul"
) -> tuple[int, int, int, int]:
    """Tile sizes ``(batch, rows, cols)`` for event mode and the bytes one tile needs (<= the budget).

    A tile holds the spike trains of an ``a`` block ``[K, b, l, D]`` and a ``b`` block ``[K, b, D, m]``
    (with simulate's transient copies), ``D S^b`` and the block's output; batch is split first, then
    the larger of rows and columns. Raises ``MemoryError`` if even a 1 x 1 tile does not fit.
    """
    budget = budget_mb * 2**20

    def tile_bytes(bb, ll, mm):
        return 8 * (3 * slots * bb * ll * inner + 4 * slots * bb * inner * mm + 2 * bb * ll * mm)  # float64

    bb, ll, mm = batch, rows, cols
    while tile_bytes(bb, ll, mm) > budget and (bb, ll, mm) != (1, 1, 1):
        if bb > 1:
            bb = math.ceil(bb / 2)
        elif mm >= ll and mm > 1:
            mm = math.ceil(mm / 2)
        else:
            ll = math.ceil(ll / 2)
    if tile_bytes(bb, ll, mm) > budget:
        raise MemoryError(
            f"{name}: event mode needs {tile_bytes(1, 1, 1) / 2**20:.2f} MiB for its smallest tile "
            f"(inner dim {inner}, {slots} spike slots) but budget_mb={budget_mb}; raise budget_mb "
            f"or use mode='fused'"
        )
    return bb, ll, mm, tile_bytes(bb, ll, mm)


def _event_matmul(a, b, ra, rb, timesteps, n_basis, stats, budget_mb, name, neurons, silent_zeros=False):
    nb, rows, inner = a.shape
    cols = b.shape[-1]
    k = encode(a[:1, :1, :1], ra, timesteps, n_basis=n_basis, neurons=neurons).intensity.numel()
    bb, ll, mm, _ = event_matmul_tiles(nb, rows, inner, cols, k, budget_mb, name)
    out = torch.empty(nb, rows, cols, dtype=torch.float64)
    tot = {"a_spikes": 0, "b_spikes": 0, "a_sat": 0, "b_sat": 0, "pairs": 0}
    for bs in _tiles(nb, bb):
        for ms in _tiles(cols, mm):
            eb = encode(b[bs, :, ms], rb, timesteps, n_basis=n_basis, return_spikes=True, neurons=neurons)
            sb = eb.spikes  # [K, bb, D, mm]
            tot["b_spikes"] += int(sb.sum())
            tot["b_sat"] += eb.clamped
            count_b = sb.sum(0)  # spikes per b element, [bb, D, mm]
            gb = eb.weighted_spikes()  # g S: a tail's spikes carry its gain
            b_lin = (eb.intensity @ gb.reshape(k, -1)).reshape(sb.shape[1:])  # g sum_j D^b_j S^b_j
            for ls in _tiles(rows, ll):
                ea = encode(
                    a[bs, ls, :],
                    ra,
                    timesteps,
                    n_basis=n_basis,
                    return_spikes=True,
                    neurons=neurons,
                    silent_zeros=silent_zeros,
                )
                sa = ea.spikes  # [K, bb, ll, D]
                ga = ea.weighted_spikes()
                dmat = ea.intensity[:, None] * eb.intensity[None, :]
                y = (dmat @ gb.reshape(k, -1)).reshape(sb.shape)  # [K, bb, D, mm]: sum_j D_kj g^b S^b_j
                # pair accumulation sum_k g^a S^a_k @ Y_k, contracted over k and d together
                pair = torch.einsum("kbld,kbdm->blm", ga, y)
                a_lin = torch.einsum("k,kbld->bld", ea.intensity, ga)
                # constant terms: A0 against b, and B0 against a (each a scalar, or per element with silent
                # zeros or headroom in use)
                a0 = ea.const.expand(a_lin.shape)
                lin = a0 @ b_lin + (a0 + a_lin) @ eb.const.expand(b_lin.shape)
                out[bs, ls, ms] = pair + lin
                tot["pairs"] += int((sa.sum(0) @ count_b).sum())  # float64 spikes: exact
                if ms.start == 0:
                    tot["a_spikes"] += int(sa.sum())
                    tot["a_sat"] += ea.clamped
    warn_saturation(f"{name}.a", tot["a_sat"], ra)
    warn_saturation(f"{name}.b", tot["b_sat"], rb)
    if stats is not None:
        n = k // timesteps
        stats.add(
            f"{name}.a",
            function="identity",
            n_basis=n,
            timesteps=timesteps,
            elements=a.numel(),
            spikes=tot["a_spikes"],
            clamped=tot["a_sat"],
            sops=tot["pairs"],
        )
        stats.add_sops(f"{name}.a", 0, macs=_matmul_macs(a.shape[:1], a, b))
        stats.add(
            f"{name}.b",
            function="identity",
            n_basis=n,
            timesteps=timesteps,
            elements=b.numel(),
            spikes=tot["b_spikes"],
            clamped=tot["b_sat"],
        )
    return out
