r"""Pure neuron dynamics: the functional core every other part of ``mbe`` rests on.

Nothing here holds state. The modules in :mod:`mbe.neuron.modules`, the fitting code and the
Triton kernel all call (or are tested against) :func:`simulate`.

Multi-basis Exponential Decay (MBE) neuron, bases :math:`n = 1..N`, timesteps :math:`t = 0..T-1`
(paper Eq. 4-8, with the project's optional per-basis input offset :math:`c_n`):

.. math::

    \mathrm{Para}(\alpha, \tau, t) &= \alpha \, e^{-t\,\Delta t / \tau}           \\
    u_n[0] &= x - c_n                                                               \\
    s_n[t] &= H(u_n[t] - V^{th}_n[t])                                               \\
    u_n[t+1] &= u_n[t] - r_n[t]\, s_n[t]                                            \\
    o_n[t+1] &= o_n[t] + d_n[t]\, s_n[t]                                            \\
    \hat f(x) &= b + \sum_n w_n\, o_n[T]

with :math:`H(v) = 1` for :math:`v \ge 0` and 0 otherwise. The Few-Spikes (FS) neuron is the
special case :math:`N = 1` with free per-step values :math:`d[t], r[t], V^{th}[t]`; so one
function, :func:`simulate`, runs both, given the kernels ``d, r, vth`` of shape ``[N, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = [
    "NeuronOutput",
    "SpikeFn",
    "heaviside",
    "SigmoidSurrogate",
    "exponential_kernel",
    "simulate",
    "readout",
    "readout_per_basis",
    "trace",
    "check_finite",
    "clamp_to_domain",
]

#: ``spike_fn(v, width) -> s``: maps the membrane-minus-threshold ``v`` to spikes. ``width`` (same
#: shape as the threshold, broadcastable to ``v``) is the local scale a surrogate gradient uses.
SpikeFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class NeuronOutput:
    """What :func:`simulate` returns.

    Attributes:
        output: decoded value :math:`\\hat f(x)`, shape ``[...]`` like the input.
        spikes: binary spike trains ``[N, T, ...]`` when asked for, else ``None``.
        spike_counts: spikes per input element summed over bases and steps, ``[...]``, when asked for.
    """

    output: Tensor
    spikes: Optional[Tensor] = None
    spike_counts: Optional[Tensor] = None


def heaviside(v: Tensor, width: Tensor) -> Tensor:
    """The exact spike function :math:`H(v) = [v \\ge 0]` (no gradient); ``width`` is ignored."""
    return (v >= 0).to(v.dtype)


class _SigmoidSurrogateFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v: Tensor, width: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(v, width)
        ctx.slope = slope
        return (v >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        v, width = ctx.saved_tensors
        k = ctx.slope / width
        sig = torch.sigmoid(k * v)
        return grad_out * k * sig * (1 - sig), None, None


class SigmoidSurrogate:
    """Heaviside forward, scaled sigmoid derivative backward.

    .. math:: \\partial s / \\partial v = \\kappa\\, \\sigma'(\\kappa v), \\quad \\kappa = \\mathrm{slope} / \\mathrm{width}

    ``width`` is the threshold's own scale at that step, so the surrogate is as sharp relative to a
    step's quantisation level at t = 15 as at t = 0 (thresholds span several orders of magnitude).
    """

    def __init__(self, slope: float = 4.0):
        if not slope > 0:
            raise ValueError(f"surrogate slope must be positive, got {slope}")
        self.slope = float(slope)

    def __call__(self, v: Tensor, width: Tensor) -> Tensor:
        return _SigmoidSurrogateFn.apply(v, width, self.slope)

    def __repr__(self) -> str:
        return f"SigmoidSurrogate(slope={self.slope})"


def exponential_kernel(alpha: Tensor, tau: Tensor, dt: Tensor, timesteps: int) -> Tensor:
    """Paper Eq. 4, one row per basis: ``K[n, t] = alpha[n] * exp(-t * dt[n] / tau[n])``.

    Args:
        alpha, tau, dt: ``[N]``. ``dt = 0`` gives the no-decay ablation (a constant kernel).
        timesteps: T.
    Returns:
        ``[N, T]`` tensor in ``alpha``'s dtype and device.
    """
    t = torch.arange(timesteps, dtype=alpha.dtype, device=alpha.device)
    return alpha[:, None] * torch.exp(-t[None, :] * (dt / tau)[:, None])


def _basis_view(v: Tensor, ndim: int) -> Tensor:
    """Reshape ``[N]`` to ``[N, 1, ..., 1]`` so it broadcasts against ``[N, *x.shape]``."""
    return v.reshape(v.shape[0], *([1] * ndim))


def simulate(
    x: Tensor,
    d: Tensor,
    r: Tensor,
    vth: Tensor,
    weight: Tensor,
    bias: Tensor | float = 0.0,
    input_offset: Optional[Tensor] = None,
    *,
    spike_fn: SpikeFn = heaviside,
    return_spikes: bool = False,
    return_counts: bool = False,
) -> NeuronOutput:
    """Run the multi-basis neuron on every element of ``x`` (module docstring has the equations).

    Args:
        x: input of any shape ``[...]``; already finite and inside the fitted domain.
        d, r, vth: kernels ``[N, T]`` (output intensities, reset amounts, thresholds).
        weight: readout ``[N]``.
        bias: scalar output bias ``b``.
        input_offset: ``[N]`` offsets :math:`c_n` subtracted from the input per basis (``None``: 0).
        spike_fn: ``heaviside`` for inference, a surrogate such as :class:`SigmoidSurrogate` for fitting.
        return_spikes: also return the spike trains ``[N, T, ...]`` (memory grows with N*T).
        return_counts: also return per-element spike counts ``[...]``.

    Returns:
        :class:`NeuronOutput`. The readout is accumulated basis by basis in order
        ``b + w_0 o_0 + w_1 o_1 + ...``, so a scalar loop written the same way matches bit for bit.
    """
    if d.shape != r.shape or d.shape != vth.shape or d.dim() != 2:
        raise ValueError(
            f"kernels d, r, vth must share one [N, T] shape, got {tuple(d.shape)}, {tuple(r.shape)}, {tuple(vth.shape)}"
        )
    n_basis, timesteps = d.shape
    if weight.shape != (n_basis,):
        raise ValueError(f"weight must have shape [N]=[{n_basis}], got {tuple(weight.shape)}")
    if spike_fn is heaviside and not return_spikes and not any(v.requires_grad for v in (x, d, r, vth)):
        out, counts = readout(x, d, r, vth, weight, bias, input_offset)
        return NeuronOutput(output=out, spike_counts=counts if return_counts else None)
    nd = x.dim()
    u = x.unsqueeze(0).expand(n_basis, *x.shape)
    if input_offset is not None:
        u = u - _basis_view(input_offset, nd)
    o = torch.zeros_like(u)
    spikes = [] if return_spikes else None
    counts = torch.zeros_like(x) if return_counts else None
    for t in range(timesteps):
        th = _basis_view(vth[:, t], nd)
        s = spike_fn(u - th, th.detach().abs() + torch.finfo(th.dtype).tiny)
        u = u - _basis_view(r[:, t], nd) * s
        o = o + _basis_view(d[:, t], nd) * s
        s = s.detach()
        if spikes is not None:
            spikes.append(s)
        if counts is not None:
            counts = counts + s.sum(0)
    out = torch.zeros_like(x) + bias
    for n in range(n_basis):
        out = out + weight[n] * o[n]
    return NeuronOutput(
        output=out,
        spikes=torch.stack(spikes, dim=1) if spikes is not None else None,
        spike_counts=counts,
    )


#: the eager readout runs this many elements (bases x inputs) at once: small inputs take all bases in one pass
EAGER_CHUNK = 1 << 20


def readout(
    x: Tensor,
    d: Tensor,
    r: Tensor,
    vth: Tensor,
    weight: Tensor,
    bias: Tensor | float = 0.0,
    input_offset: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Inference only: decoded output and spike counts, several bases at a time, in bounded memory.

    The same arithmetic as :func:`simulate` with ``heaviside`` (``u + (-r) s`` rounds like ``u - r s``
    since ``s`` is 0 or 1; spike counts are sums of 0/1, exact in any order; the readout is accumulated
    in the same basis order), so results match it bit for bit. Bases run in groups of as many as fit in
    :data:`EAGER_CHUNK` elements (all of them for small inputs): a step of a group is three tensor ops on a
    ``[group, numel]`` membrane, so a small input costs ``3 T`` ops, not ``3 N T``, and no ``[N, T, ...]``
    tensor is ever built. :func:`readout_per_basis` is the same arithmetic in the shape ``torch.compile`` fuses.

    Shapes: ``x [...]``; ``d, r, vth [N, T]``; ``weight [N]``; ``input_offset [N]`` or ``None``.
    Returns ``(output [...], spike_counts [...])``.
    """
    n_basis, timesteps = d.shape
    flat = x.reshape(1, -1)
    numel = flat.shape[1]
    group = max(1, min(n_basis, EAGER_CHUNK // max(numel, 1)))
    out = torch.zeros_like(flat[0]) + bias
    counts = torch.zeros_like(flat[0])
    for first in range(0, n_basis, group):
        rows = slice(first, min(first + group, n_basis))
        u = flat - input_offset[rows, None] if input_offset is not None else flat.repeat(rows.stop - first, 1)
        o = torch.zeros_like(u)
        neg_r, dd, th = -r[rows], d[rows], vth[rows]
        for t in range(timesteps):
            s = torch.ge(u, th[:, t, None]).to(x.dtype)
            u.addcmul_(s, neg_r[:, t, None])  # s is 0/1: the product is exact, so this rounds like u - r s
            o.addcmul_(s, dd[:, t, None])
            counts.add_(s.sum(0))
        for k in range(rows.stop - first):
            out = out + weight[first + k] * o[k]
    return out.view(x.shape), counts.view(x.shape)


def readout_per_basis(
    x: Tensor,
    d: Tensor,
    r: Tensor,
    vth: Tensor,
    weight: Tensor,
    bias: Tensor | float = 0.0,
    input_offset: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """:func:`readout` one basis at a time (same contract, same numbers): the form :mod:`mbe.neuron.compiled`
    hands to ``torch.compile``, which fuses its whole ``N x T`` loop into one pass over the elements (each
    element's membrane in a register). Run eagerly it costs ``3 N T`` tensor ops; :func:`readout` is faster there.

    A step selects rather than multiplies: ``u - where(s, r, 0)`` is ``u + (-r) s`` exactly (``s`` is 0 or 1), and
    compiled it is a compare, two blends and three adds per step where ``addcmul`` also multiplied by the mask and
    by its implicit 1 (measured: 20 % faster for N=16, T=16 on one core; about even for N=8)."""
    n_basis, timesteps = d.shape
    out = torch.zeros_like(x) + bias
    counts = torch.zeros_like(x)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    for n in range(n_basis):
        u = x - input_offset[n] if input_offset is not None else x
        o = torch.zeros_like(x)
        for t in range(timesteps):
            s = u >= vth[n, t]
            u = u - torch.where(s, r[n, t], zero)
            o = o + torch.where(s, d[n, t], zero)
            counts = counts + s.to(x.dtype)
        out = out + weight[n] * o
    return out, counts


def trace(
    x: float,
    d: Tensor,
    r: Tensor,
    vth: Tensor,
    weight: Tensor,
    bias: Tensor | float = 0.0,
    input_offset: Optional[Tensor] = None,
) -> dict:
    """Every state of the neuron for one scalar input, for teaching and plots.

    Returns ``[N, T]`` tensors ``membrane`` (:math:`u_n[t]` before step t's spike), ``threshold``
    (:math:`V^{th}_n[t]`), ``spike`` (:math:`s_n[t]`) and ``readout`` (:math:`o_n[t+1]`), plus the decoded
    ``output`` (a float, equal to :func:`simulate`'s for this ``x``).
    """
    n_basis, timesteps = d.shape
    u = torch.full((n_basis,), float(x), dtype=d.dtype)
    if input_offset is not None:
        u = u - input_offset
    o = torch.zeros(n_basis, dtype=d.dtype)
    membrane, spike, readout_ = (torch.zeros(n_basis, timesteps, dtype=d.dtype) for _ in range(3))
    for t in range(timesteps):
        membrane[:, t] = u
        s = (u >= vth[:, t]).to(d.dtype)
        u = u - r[:, t] * s
        o = o + d[:, t] * s
        spike[:, t], readout_[:, t] = s, o
    out = torch.zeros((), dtype=d.dtype) + bias
    for n in range(n_basis):
        out = out + weight[n] * o[n]
    return {
        "membrane": membrane,
        "threshold": vth.detach().clone(),
        "spike": spike,
        "readout": readout_,
        "output": float(out),
    }


def check_finite(x: Tensor, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if ``x`` holds NaN or +-inf (``TypeError`` if it is not a float tensor)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: input must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{what}: expected a floating-point tensor, got dtype {x.dtype}")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        n_nan = int(torch.isnan(x).sum())
        raise ValueError(
            f"{what}: input holds {n_bad} non-finite value(s) ({n_nan} NaN, {n_bad - n_nan} inf) out of "
            f"{x.numel()}; a spiking neuron cannot encode them. Find where they arise upstream "
            f"(e.g. torch.autograd.detect_anomaly or torch.isfinite on the layer's input)."
        )


def clamp_to_domain(x: Tensor, domain: tuple[float, float]) -> tuple[Tensor, int]:
    """Clamp ``x`` into the closed ``domain``; return the clamped tensor and how many elements moved."""
    lo, hi = domain
    outside = int(((x < lo) | (x > hi)).sum())
    if outside:
        x = x.clamp(lo, hi)
    return x, outside
