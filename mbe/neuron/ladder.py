r"""The exact closed-form readout of a neuron whose kernels halve each step (a binary ladder).

When every basis's three kernels are one halving ladder, :math:`d_n[t] = r_n[t] = V^{th}_n[t] = K_n[t] =
\alpha_n 2^{-t}` (Eq. 4 with :math:`\Delta t/\tau = \ln 2`, as in :func:`mbe.neuron.binary_identity`), each basis
is a greedy binary expansion: with :math:`q_n = \alpha_n 2^{1-T}` and :math:`M = 2^T - 1`,

.. math::
    m_n = \min\!\big(M, \max(0, \lfloor (x - c_n) / q_n \rfloor)\big), \qquad
    o_n[T] = m_n\, q_n, \qquad s_n[t] = \text{bit } T-1-t \text{ of } m_n,

so the output is :math:`b + \sum_n w_n m_n q_n` and the spike count :math:`\sum_n \mathrm{popcount}(m_n)`:
a few operations per basis instead of :math:`T` compare-subtract steps.

**Bit for bit what** :func:`~mbe.neuron.functional.simulate` **returns**, in a float type of :math:`p` significand
bits, when (:func:`halving_levels`) every :math:`K_n[t]` is exactly :math:`\alpha_n 2^{-t}` in that type, and
:math:`\alpha_n` has at most :math:`p - T` significant bits:

- the membrane is exact: with :math:`u_0 = \mathrm{fl}(x - c_n) \in [0, 2\alpha_n)`, each step keeps
  :math:`u_t < 2 K_t`, and a spike subtracts :math:`K_t \le u_t < 2K_t`, which is exact (Sterbenz); so the spikes
  are the binary digits of :math:`u_0 / q_n`. For :math:`u_0 \ge 2\alpha_n` every step fires (rounding is
  monotone, so :math:`u_t \ge 2K_t` stays true), for :math:`u_0 < 0` none does: the clamp to :math:`[0, M]`;
- every partial sum :math:`o_n[t]` is :math:`\alpha_n j 2^{-t}` with :math:`j < 2^T`, so it has at most
  :math:`p` significant bits and is exact, as is :math:`m_n q_n`;
- :math:`m_n` itself comes from a rounded quotient, then one step down if :math:`m q_n > u_0` and one up if
  :math:`(m + 1) q_n \le u_0` (exact products and comparisons), which corrects any quotient within one of the
  true :math:`u_0/q_n` (also a division compiled as a multiplication by the reciprocal);
- the readout :math:`b + w_0 o_0 + w_1 o_1 + \dots` is accumulated in the same order with the same operations.

**Staggered bases** (:func:`staggered_form`, :func:`staggered_readout`). :func:`~mbe.neuron.binary_identity`'s bases
share one level and one weight and differ only in their offsets, spread over less than one step :math:`q`. Then,
with :math:`r` the basis of the largest offset, every :math:`m_n` is :math:`m_r` or :math:`m_r + 1`, so one quotient
and one comparison per basis give them all:

.. math::
    k_n = [\,m_r < M\,]\,[\,\mathrm{fl}(x - c_n) \ge (m_r + 1) q\,],\qquad K = \sum_n k_n,\qquad
    \hat f = b + (w q) (N m_r + K),\qquad
    \text{count} = (N - K)\,\mathrm{popcount}(m_r) + K\,\mathrm{popcount}(m_r + 1).

Bit for bit the simulation when (checked by :func:`staggered_form` in exact rational arithmetic):

- the offsets' spread :math:`\Delta = c_r - \min_n c_n` leaves a gap :math:`g = q - \Delta` of at least one ulp of
  :math:`(M + 2) q`. Then :math:`\mathrm{fl}(x - c_r) < (m_r + 1) q` (a representable bound) gives
  :math:`x - c_r < (m_r + 1) q` (rounding is monotone), so :math:`x - c_n < (m_r + 2) q - g` and its rounding stays
  below :math:`(m_r + 2) q`; and :math:`x - c_n \ge x - c_r` gives :math:`m_n \ge m_r`. The clamps: :math:`m_r = M`
  forces :math:`m_n = M`; :math:`\mathrm{fl}(x - c_r) < 0` gives :math:`m_r = 0` and the same bound with
  :math:`m_r + 1 = 1`;
- every term :math:`w\,m_n q` and every partial sum of the readout is exact: all are integer multiples of the unit
  :math:`E`, the smaller lowest set bit of :math:`b` and :math:`w q`, and :math:`|b| + N |w| M q < 2^p E`. Then the
  readout is the exact sum in any order, and :math:`(w q)(N m_r + K)` and its sum with :math:`b` are exact too.

``tests/test_ladder.py`` checks both forms at every change point, the floats beside it, the domain ends and dense
random inputs, eager and compiled.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional

import torch
from torch import Tensor

__all__ = [
    "halvings",
    "significant_bits",
    "halving_levels",
    "ladder_readout",
    "popcount",
    "staggered_form",
    "staggered_readout",
]


def halvings(timesteps: int, dtype: torch.dtype, device=None) -> Tensor:
    """``[T]``: :math:`2^{-t}` for ``t = 0..T-1``, exact in ``dtype`` (no ``exp``)."""
    return torch.tensor([2.0**-t for t in range(timesteps)], dtype=dtype, device=device)


def significant_bits(value: float) -> int:
    """How many significant bits the binary significand of a finite nonzero ``value`` has (1 for powers of two)."""
    mantissa, _ = math.frexp(abs(value))
    digits = int(mantissa * (1 << 53))  # exact: a float64 significand has 53 bits
    return 53 - ((digits & -digits).bit_length() - 1)


def halving_levels(d: Tensor, r: Tensor, vth: Tensor) -> Optional[Tensor]:
    """The leading levels :math:`\\alpha` ``[N]`` when the kernels ``[N, T]`` (in the dtype the neuron runs in) are
    one exact halving ladder each and the closed form is exact in that dtype (module docstring), else ``None``."""
    if d.dim() != 2 or not d.is_floating_point() or not (torch.equal(d, r) and torch.equal(d, vth)):
        return None
    timesteps = d.shape[1]
    alpha = d[:, 0]
    if not bool(torch.isfinite(alpha).all() and (alpha > 0).all()):
        return None
    if not torch.equal(d, alpha[:, None] * halvings(timesteps, d.dtype, d.device)[None, :]):
        return None
    info = torch.finfo(d.dtype)
    precision = _precision(d.dtype)
    smallest = float(alpha.min()) * 2.0 ** (1 - timesteps)
    if smallest < info.tiny or any(significant_bits(a) + timesteps > precision for a in alpha.tolist()):
        return None
    return alpha


def popcount(v: Tensor) -> Tensor:
    """Set bits of each non-negative ``int32`` or ``int64`` element (a branch-free bit count, same dtype)."""
    if v.dtype == torch.int64:
        v = v - ((v >> 1) & 0x5555555555555555)
        v = (v & 0x3333333333333333) + ((v >> 2) & 0x3333333333333333)
        v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0F
        v = v + (v >> 32)
    else:
        v = v - ((v >> 1) & 0x55555555)
        v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
        v = (v + (v >> 4)) & 0x0F0F0F0F
    v = v + (v >> 8)
    return (v + (v >> 16)) & 0x7F


def ladder_readout(
    x: Tensor,
    step: Tensor,
    top: Tensor,
    weight: Tensor,
    bias: Tensor,
    input_offset: Optional[Tensor] = None,
    wide: bool = False,
) -> tuple[Tensor, Tensor]:
    """Decoded output and spike counts of a halving-ladder neuron (module docstring), the same numbers as
    :func:`~mbe.neuron.functional.readout` for kernels that pass :func:`halving_levels`.

    Shapes: ``x [...]``; ``step [N]`` (:math:`q_n = \\alpha_n 2^{1-T}`); ``top`` a scalar (:math:`2^T - 1`), all in
    ``x``'s dtype; ``weight [N]``, ``bias []``, ``input_offset [N]`` or ``None``; ``wide``: count bits in int64 (needed from
    T = 31 on; int32 is faster). Returns ``(output [...], counts [...])``.
    """
    counts = torch.zeros_like(x, dtype=torch.int64 if wide else torch.int32)
    out = torch.zeros_like(x) + bias
    for n in range(step.shape[0]):
        u = x - input_offset[n] if input_offset is not None else x
        m = _quotient(u, step[n], top)
        out = out + weight[n] * (m * step[n])
        counts = counts + popcount(m.to(counts.dtype))
    return out, counts.to(x.dtype)


def _quotient(u: Tensor, q: Tensor, top: Tensor) -> Tensor:
    r""":math:`\min(M, \max(0, \lfloor u / q \rfloor))` exactly (a rounded quotient corrected by one step
    either way with exact products; module docstring)."""
    m = torch.floor(torch.minimum(torch.clamp(u / q, min=0.0), top))
    m = m - (m * q > u).to(u.dtype)
    m = m + ((m + 1) * q <= u).to(u.dtype)
    return torch.minimum(torch.clamp(m, min=0.0), top)


def _lowest_bit(v: Fraction) -> Fraction:
    """The lowest set bit of a nonzero dyadic rational (a float's value)."""
    num = abs(v.numerator)
    return Fraction(num & -num, v.denominator)


def _fits(v: Fraction, dtype: torch.dtype) -> bool:
    """Whether the dyadic rational ``v`` is a normal number of ``dtype`` (or zero), exactly."""
    if v == 0:
        return True
    info = torch.finfo(dtype)
    odd = abs(v) / _lowest_bit(v)  # the significand as an odd integer
    return odd.numerator.bit_length() <= _precision(dtype) and info.tiny <= abs(v) <= info.max


def _precision(dtype: torch.dtype) -> int:
    """Significand bits of a float dtype (24 for float32, 53 for float64)."""
    return int(round(-math.log2(torch.finfo(dtype).eps))) + 1


def staggered_form(
    alpha: Tensor, weight: Tensor, bias: Tensor, input_offset: Optional[Tensor], timesteps: int
) -> Optional[tuple[Tensor, ...]]:
    """``(step, top, scale, bias, reference, others)`` for :func:`staggered_readout` when the halving ladders of
    levels ``alpha [N]`` (from :func:`halving_levels`, in the compute dtype, like ``weight [N]``, ``bias []`` and
    ``input_offset [N]``) share one level and one weight and their offsets are spread over less than a step, so
    that the staggered form is the simulation bit for bit (module docstring; checked in exact rational
    arithmetic); else ``None``. ``reference`` is the largest offset, ``others`` the rest ``[N - 1]``."""
    n_basis = alpha.shape[0]
    if input_offset is None or n_basis < 2:
        return None
    if not (bool((alpha == alpha[0]).all()) and bool((weight == weight[0]).all())):
        return None
    if not (torch.isfinite(bias).all() and torch.isfinite(weight).all() and torch.isfinite(input_offset).all()):
        return None
    dtype = alpha.dtype
    q = Fraction(float(alpha[0])) * Fraction(2) ** (1 - timesteps)
    top = 2**timesteps - 1
    offsets = [Fraction(v) for v in input_offset.tolist()]
    ref = max(range(n_basis), key=offsets.__getitem__)
    gap = q - (offsets[ref] - min(offsets))
    _, exponent = math.frexp(float((top + 2) * q))  # rounding up only overestimates the ulp
    if gap <= 0 or gap < Fraction(2) ** (exponent - _precision(dtype)):
        return None
    w, b = Fraction(float(weight[0])), Fraction(float(bias))
    wq = w * q
    if wq == 0 or not _fits(wq, dtype):
        return None
    unit = min(_lowest_bit(v) for v in (b, wq) if v != 0)
    if abs(b) + n_basis * abs(wq) * top >= 2 ** _precision(dtype) * unit:
        return None
    others = torch.cat([input_offset[:ref], input_offset[ref + 1 :]])
    scalar = lambda v: torch.tensor(float(v), dtype=dtype, device=alpha.device)  # noqa: E731
    return scalar(q), scalar(top), scalar(wq), bias, input_offset[ref], others


def staggered_readout(
    x: Tensor, step: Tensor, top: Tensor, scale: Tensor, bias: Tensor, reference: Tensor, others: Tensor
) -> tuple[Tensor, Tensor]:
    """Decoded output and spike counts of ``N`` staggered halving ladders (module docstring), the same numbers as
    :func:`ladder_readout` and the simulation for neurons that pass :func:`staggered_form`: one quotient and one
    comparison per basis.

    Shapes: ``x [...]``; ``step`` (:math:`q`), ``top`` (:math:`M`), ``scale`` (:math:`w q`), ``bias``, ``reference``
    (:math:`c_r`) scalars and ``others [N - 1]`` (the other offsets), all in ``x``'s dtype. Returns
    ``(output [...], counts [...])``. :math:`K` is counted in ``x``'s dtype and the popcounts run in int64: compiled,
    both stay in the float vectors' width (int32 masks and counts cost a shuffle per conversion, 3x the time).
    """
    m = _quotient(x - reference, step, top)
    above = (m + 1) * step
    k = torch.zeros_like(x)
    for n in range(others.shape[0]):
        k = k + (x - others[n] >= above).to(x.dtype)
    k = torch.where(m < top, k, 0.0)
    n_basis = others.shape[0] + 1
    out = bias + scale * (n_basis * m + k)
    whole = m.to(torch.int64)
    counts = (n_basis - k) * popcount(whole).to(x.dtype) + k * popcount(whole + 1).to(x.dtype)
    return out, counts
