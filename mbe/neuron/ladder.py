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

``tests/test_ladder.py`` checks it at every change point, the floats beside it, the domain ends and dense random
inputs, eager and compiled.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ["halvings", "significant_bits", "halving_levels", "ladder_readout", "popcount"]


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
    precision = int(round(-math.log2(info.eps))) + 1  # 24 for float32, 53 for float64
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
        q = step[n]
        m = torch.floor(torch.minimum(torch.clamp(u / q, min=0.0), top))
        m = m - (m * q > u).to(x.dtype)
        m = m + ((m + 1) * q <= u).to(x.dtype)
        m = torch.minimum(torch.clamp(m, min=0.0), top)
        out = out + weight[n] * (m * q)
        counts = counts + popcount(m.to(counts.dtype))
    return out, counts.to(x.dtype)
