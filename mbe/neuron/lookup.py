r"""The exact table readout: a neuron in inference is a step function of its input, read from a table.

With fixed kernels, every basis :math:`n` of a neuron maps an input :math:`x` to a spike pattern
:math:`s_n[0..T-1]`, and the decoded output :math:`b + \sum_n w_n o_n` (and the spike count) depends on
:math:`x` only through the patterns. The pattern is *lexicographically non-decreasing* in :math:`x`, in
floating point too: for :math:`x < y` with the same first :math:`t` spikes, :math:`u_n[t](x) \le u_n[t](y)`
(each step subtracts the same amount from both, and rounding is monotone), so at the first step where they
differ it is :math:`x` that stays silent. Hence on any interval whose two ends share a pattern, every input
shares it, and bisection over the float32 values between two inputs (ordered as integers) finds every point
where a basis's pattern changes, exactly, in about 32 rounds per change.

The union of the bases' change points ``bp`` (sorted) cuts the neuron's domain into pieces; piece ``j``'s output
and spike count are computed once, by the simulation itself, at the piece's first input. A readout is then

.. math::
    i = \mathrm{clamp}(\lfloor (g(x) - g_0) \cdot h^{-1} \rfloor, 0, B - 1),\quad
    j = \mathrm{first}[i] + \sum_{k<K} [x \ge bp[\mathrm{first}[i] + k]],\quad
    \hat f(x) = \mathrm{value}[j]

with ``first[i]`` the number of change points whose bin (same formula) is below ``i``, and :math:`g` the bin
coordinate (:func:`bin_coordinate`: :math:`x` itself, or a signed logarithm read from the float's bits where the
change points crowd near zero), the bins spanning the change points with one empty bin beyond each end.
Because the bin index is non-decreasing in :math:`x`, the change points of a later bin lie above every input
of bin ``i``, so the sum counts exactly the change points at or below :math:`x` as long as the bin holds at
most :data:`PER_BIN`. Bins that hold more (change points a few float steps apart) are marked (``first = -1``)
and their inputs are simulated instead; :func:`build_table` gives up (``None``) where more than
:data:`MAX_OVERFLOW` of the bins would be such, even with :data:`MAX_BINS` bins.

The result is the simulation's, bit for bit (``tests/test_lookup.py`` checks every change point, its float
neighbours and dense random inputs). Cost: about seven gathers per element whatever ``N`` and ``T``, where
the simulation costs ``~4 N T`` operations. Compiled with unchecked int32 gathers and a float32 mask
(:func:`table_readout`), it is faster than the compiled simulation on a 2-core x86 CPU: GELU N=4 on 4.8M elements
25 against 30 ms at T=8 and 52 against 64 ms at T=16; vit-mnist at T=8 192-197 against 228-271 ms a forward,
gpt2-pydocs at T=8 308-314 against 351-380 ms, logits identical; vit-mnist at T=16 no gain (its neurons' tables
hold hundreds of thousands of change points and miss the caches). Tables stay off by default (their build, ~0.1-1 s
per neuron on first use, was not measured for the models' larger neurons); ``MBE_TABLES=1`` turns them on for
neurons with ``N T`` above :data:`MIN_STEPS`. Spike trains (event mode) always come from the simulation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .functional import readout

#: change points a bin may hold (compares per element)
PER_BIN = 4
#: the most bins a table may use (int32 each: 4 MiB)
MAX_BINS = 1 << 20
#: the most change points a table may hold (beyond, the simulation is used)
MAX_POINTS = 1 << 22
#: the largest share of the bins that may hold more than PER_BIN points (their inputs simulated instead)
MAX_OVERFLOW = 1e-2
#: with tables on, a neuron reads from its table where N x T is above this
MIN_STEPS = 64
#: the longest spike train a pattern code holds (an int64 per basis)
MAX_T = 62


def tables_enabled() -> bool:
    """Whether neurons read from their tables (``MBE_TABLES=1``; off by default, see the module docstring)."""
    return os.environ.get("MBE_TABLES", "0") == "1"


@dataclass
class LookupTable:
    """A neuron's exact readout table (float32). ``bp [P + PER_BIN]`` change points padded with NaN (no
    input is at or above a NaN, an infinite one included);
    ``value [P + 1]``, ``count [P + 1]`` per piece; ``first [B]`` per bin; ``log_map, k0, lo, inv_h [ ]`` the
    bin map (:func:`bin_index`)."""

    log_map: Tensor
    k0: Tensor
    lo: Tensor
    inv_h: Tensor
    last_bin: Tensor
    first: Tensor
    bp: Tensor
    value: Tensor
    count: Tensor

    @property
    def points(self) -> int:
        return int(self.bp.numel()) - PER_BIN

    def args(self) -> tuple[Tensor, ...]:
        """The tensors :func:`table_readout` takes after ``x``."""
        return (self.log_map, self.k0, self.lo, self.inv_h, self.last_bin, self.first, self.bp, self.value, self.count)


def bin_coordinate(x: Tensor, log_map: Tensor, k0: Tensor) -> Tensor:
    r"""The coordinate bins are uniform in: ``x`` itself, or (``log_map``) a signed logarithmic one read from
    the float's bits, :math:`\mathrm{sign}(x) \max(\mathrm{bits}(|x|) - k_0, 0)`, which gives every octave
    above :math:`|x| = \mathrm{float}(k_0)` as many bins (change points of decaying thresholds crowd near
    zero). Both are non-decreasing in ``x``."""
    logarithmic = torch.sign(x) * torch.clamp(x.abs().view(torch.int32) - k0, min=0).to(x.dtype)
    return torch.where(log_map, logarithmic, x)


def bin_index(
    x: Tensor, log_map: Tensor, k0: Tensor, lo: Tensor, inv_h: Tensor, last_bin: Tensor, dtype=torch.int64
) -> Tensor:
    """``floor((g(x) - lo) * inv_h)`` clamped to ``[0, last_bin]`` (``g``: :func:`bin_coordinate`), as ``dtype``:
    non-decreasing in ``x``; a NaN goes to bin 0, so every index a readout derives from it stays inside the table."""
    b = torch.floor((bin_coordinate(x, log_map, k0) - lo) * inv_h)
    b = torch.where(b > 0, b, 0.0)  # below the first bin, and NaN
    return torch.where(b < last_bin, b, last_bin).to(dtype)


def _gather(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` without bounds checks (``aten._unsafe_index``): every index a readout forms is inside its
    table by construction (:func:`bin_index` clamps, ``first`` holds at most ``P``, ``bp`` is padded with
    :data:`PER_BIN` NaNs, which no input reaches, so a piece is at most ``P``)."""
    return torch.ops.aten._unsafe_index(table, [index])


def table_readout(
    x: Tensor, log_map, k0, table_lo, inv_h, last_bin, first, bp, value, count
) -> tuple[Tensor, Tensor, Tensor]:
    """Output and spike count of every element of ``x`` (inside the table's domain) from its table, and a mask
    of the elements in bins marked for simulation (1.0 there, else 0.0; their output and count are not valid).

    Written for Inductor's C++ loop: unchecked int32 gathers (:func:`_gather`) and a float32 mask. The checked
    ``table[index]`` (a bounds check and a negative-index wrap per gather, in int64) and a bool mask (a store the
    loop does not vectorise) each made it about twice as slow: GELU N=4, T=8, 4.8M elements, 2 cores, compiled,
    52-69 ms before, 20-22 ms after."""
    i = bin_index(x, log_map, k0, table_lo, inv_h, last_bin, torch.int32)
    start = _gather(first, i)
    crowded = (start < 0).to(x.dtype)
    start = start.clamp(min=0)
    piece = start
    for k in range(PER_BIN):
        piece = piece + (x >= _gather(bp, start + k)).to(start.dtype)
    return _gather(value, piece), _gather(count, piece), crowded


def _ordered(x: Tensor) -> Tensor:
    """float32 -> int64 keys in the floats' order (-0.0 and +0.0 adjacent)."""
    i = x.view(torch.int32).to(torch.int64)
    return torch.where(i < 0, -(i & 0x7FFFFFFF) - 1, i)


def _from_ordered(k: Tensor) -> Tensor:
    i = torch.where(k < 0, (-(k + 1)) | -0x80000000, k)
    return i.to(torch.int32).view(torch.float32)


def _codes(x: Tensor, d: Tensor, r: Tensor, vth: Tensor, offset: Optional[Tensor], n: int) -> Tensor:
    """Basis ``n``'s spike pattern for each ``x`` as an integer (first step most significant), by the same
    arithmetic as :func:`mbe.neuron.functional.readout`."""
    u = x - offset[n] if offset is not None else x.clone()
    code = torch.zeros(x.shape, dtype=torch.int64)
    for t in range(d.shape[1]):
        s = torch.ge(u, vth[n, t]).to(x.dtype)
        u.addcmul_(s, -r[n, t])
        code = code * 2 + s.to(torch.int64)
    return code


def change_points(d: Tensor, r: Tensor, vth: Tensor, offset: Optional[Tensor], lo: float, hi: float) -> Tensor:
    """Every float32 input in ``(lo, hi]`` at which some basis's spike pattern differs from the float below it,
    sorted (see the module docstring); ``[P]`` float32."""
    a0, b0 = _ordered(torch.tensor([lo, hi], dtype=torch.float32))
    found = []
    for n in range(d.shape[0]):
        a, b = a0.reshape(1), b0.reshape(1)
        ca, cb = (_codes(_from_ordered(k), d, r, vth, offset, n) for k in (a, b))
        while a.numel():
            keep = ca != cb
            a, b, ca, cb = a[keep], b[keep], ca[keep], cb[keep]
            adjacent = b - a == 1
            found.append(b[adjacent])
            a, b, ca, cb = a[~adjacent], b[~adjacent], ca[~adjacent], cb[~adjacent]
            if a.numel() > MAX_POINTS:
                raise OverflowError("more change points than MAX_POINTS")
            m = a + (b - a) // 2
            cm = _codes(_from_ordered(m), d, r, vth, offset, n)
            a, b, ca, cb = torch.cat([a, m]), torch.cat([m, b]), torch.cat([ca, cm]), torch.cat([cm, cb])
    keys = torch.unique(torch.cat(found)) if found else torch.zeros(0, dtype=torch.int64)
    return _from_ordered(keys)


def build_table(d, r, vth, weight, bias, offset, domain) -> Optional[LookupTable]:
    """The exact table of a float32 neuron on ``domain`` (its kernels as :func:`readout` takes them), with
    at least two bins per change point, doubled until crowded bins cover at most :data:`MAX_OVERFLOW` of the
    domain; ``None`` where that takes more than :data:`MAX_BINS` bins, there are more than :data:`MAX_POINTS`
    change points, or T exceeds :data:`MAX_T`."""
    if d.dtype != torch.float32 or d.shape[1] > MAX_T:
        return None
    lo, hi = (float(v) for v in torch.tensor(domain, dtype=torch.float32))
    try:
        bp = change_points(d, r, vth, offset, lo, hi)
    except OverflowError:
        return None
    if bp.numel() > MAX_POINTS:
        return None
    starts = torch.cat([torch.tensor([lo], dtype=torch.float32), bp])
    value, count = readout(starts, d, r, vth, weight, bias, offset)
    maps = [_bin_map(bp, lo, hi, False), _bin_map(bp, lo, hi, True)]
    maps = [m for m in maps if m is not None]
    if not maps:
        return None
    log_map, k0, g_lo, inv_h, last, per_bin = min(maps, key=lambda m: m[-1].numel())
    crowded = per_bin > PER_BIN
    first = torch.cat([torch.zeros(1, dtype=torch.int64), per_bin.cumsum(0)[:-1]])
    first[crowded] = -1
    padded = torch.cat([bp, torch.full((PER_BIN,), float("nan"), dtype=torch.float32)])
    return LookupTable(log_map, k0, g_lo, inv_h, last, first.to(torch.int32), padded, value, count)


def _bin_map(bp: Tensor, lo: float, hi: float, log_map: bool):
    """Uniform bins in :func:`bin_coordinate` over the change points' span: at least two per change point, doubled until
    crowded bins (more than :data:`PER_BIN` points) are at most :data:`MAX_OVERFLOW` of them and neither end bin
    (which also takes every input beyond the span) is one; ``None`` beyond
    :data:`MAX_BINS`. Returns the map's tensors and the points per bin."""
    flag = torch.tensor(log_map)
    magnitudes = bp.abs()[bp != 0]
    smallest = float(magnitudes.min()) if magnitudes.numel() else 1.0
    k0 = (
        torch.tensor(smallest, dtype=torch.float32).view(torch.int32) - 1
        if log_map
        else torch.tensor(0, dtype=torch.int32)
    )
    span = [float(bp.min()), float(bp.max())] if bp.numel() > 1 else [lo, hi]  # inputs beyond: the end bins
    ends = bin_coordinate(torch.tensor(span, dtype=torch.float32), flag, k0)
    g_lo, g_hi = float(ends[0]), float(ends[1])
    bins = min(MAX_BINS, 1 << max(8, int(bp.numel()).bit_length() + 1))
    while True:
        # one empty bin beyond each end of the span: inputs beyond it land there, with no change point to crowd it
        scale = (bins - 2) / (g_hi - g_lo) if g_hi > g_lo else 0.0
        inv_h = torch.tensor(scale, dtype=torch.float32)
        last = torch.tensor(float(bins - 1), dtype=torch.float32)
        g0 = torch.tensor(g_lo - (1.0 / scale if scale else 0.0), dtype=torch.float32)
        per_bin = torch.bincount(bin_index(bp, flag, k0, g0, inv_h, last), minlength=bins)
        crowded = per_bin > PER_BIN
        if int(crowded.sum()) <= MAX_OVERFLOW * bins and not bool(crowded[0] | crowded[-1]):
            return flag, k0, g0, inv_h, last, per_bin
        if bins >= MAX_BINS:
            return None
        bins *= 2
