r"""The Multi-basis Exponential Decay (MBE) neuron: parameters and module.

Each basis :math:`n` owns three exponential kernels (paper Eq. 4)

.. math::
    d_n[t] = \alpha^d_n e^{-t\,\Delta t_n/\tau^d_n},\quad
    r_n[t] = \alpha^r_n e^{-t\,\Delta t_n/\tau^r_n},\quad
    V^{th}_n[t] = \alpha^{th}_n e^{-t\,\Delta t_n/\tau^{th}_n}

a readout weight :math:`w_n` and an input offset :math:`c_n`, plus one output bias :math:`b`.
The paper learns :math:`\tau^d, \tau^r, \tau^{th}, \Delta t, w` (5N values) with one shared
:math:`\alpha` and no offset or bias; the project's recipe may also learn per-basis levels,
offsets and the bias (see :mod:`mbe.fitting`). Dynamics: :func:`mbe.neuron.functional.simulate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .base import SpikingNeuron, validate_counts, validate_domain
from .functional import exponential_kernel
from .ladder import halvings, staggered_form

PER_BASIS = ("alpha_d", "alpha_r", "alpha_vth", "tau_d", "tau_r", "tau_vth", "dt", "weight", "input_offset")


@dataclass
class MBEParameters:
    """Every value of an MBE neuron; each field ``[N]`` except the scalar ``bias``.

    ``dt = 0`` gives constant kernels (the paper's no-decay ablation).
    """

    alpha_d: Tensor
    alpha_r: Tensor
    alpha_vth: Tensor
    tau_d: Tensor
    tau_r: Tensor
    tau_vth: Tensor
    dt: Tensor
    weight: Tensor
    input_offset: Tensor
    bias: Tensor

    def __post_init__(self):
        n = self.weight.shape[0] if self.weight.dim() == 1 else -1
        for name in PER_BASIS:
            v = getattr(self, name)
            if v.dim() != 1 or v.shape[0] != n:
                raise ValueError(f"MBEParameters.{name} must have shape [N]=[{n}], got {tuple(v.shape)}")
        if self.bias.dim() != 0:
            raise ValueError(f"MBEParameters.bias must be a scalar tensor, got shape {tuple(self.bias.shape)}")
        for name in ("tau_d", "tau_r", "tau_vth"):
            if not bool((getattr(self, name) > 0).all()):
                raise ValueError(f"MBEParameters.{name} must be positive, got {getattr(self, name).tolist()}")

    @property
    def n_basis(self) -> int:
        return self.weight.shape[0]

    def kernels(self, timesteps: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(d, r, vth)``, each ``[N, T]`` (Eq. 4)."""
        return (
            exponential_kernel(self.alpha_d, self.tau_d, self.dt, timesteps),
            exponential_kernel(self.alpha_r, self.tau_r, self.dt, timesteps),
            exponential_kernel(self.alpha_vth, self.tau_vth, self.dt, timesteps),
        )

    def to_dict(self) -> dict:
        """Plain lists of Python floats (JSON-safe; float repr round-trips exactly)."""
        return {f.name: getattr(self, f.name).detach().cpu().double().tolist() for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict, dtype=torch.float32) -> "MBEParameters":
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"MBE parameter record lacks {missing}")
        return cls(**{f.name: torch.tensor(data[f.name], dtype=dtype) for f in fields(cls)})

    def detach(self) -> "MBEParameters":
        return MBEParameters(**{f.name: getattr(self, f.name).detach().clone() for f in fields(self)})


class MBENeuron(SpikingNeuron):
    r"""A fitted MBE neuron approximating ``function`` on ``domain``.

    Update rule (per basis, per step): :math:`s = H(u - V^{th}[t])`, :math:`u \leftarrow u - r[t] s`,
    :math:`o \leftarrow o + d[t] s`; output :math:`b + \sum_n w_n o_n[T]`.

    Args:
        params: :class:`MBEParameters` (stored as buffers, so ``.to(device, dtype)`` moves them).
        timesteps: T.
        function, domain, backend: see :class:`~mbe.neuron.base.SpikingNeuron`.

    Shapes: input ``[...]`` (any), output ``[...]``; ``run(x, return_spikes=True).spikes`` is ``[N, T, ...]``.

    Example::

        >>> neuron = mbe.get_neuron("gelu", n_basis=4, timesteps=16)
        >>> y = neuron(torch.linspace(-4, 4, 9))
    """

    def __init__(
        self, params: MBEParameters, timesteps: int, function: str = "custom", domain=(-1.0, 1.0), backend: str = "auto"
    ):
        super().__init__(function, domain, backend)
        validate_counts(params.n_basis, timesteps)
        self._timesteps = int(timesteps)
        for f in fields(params):
            self.register_buffer(f.name, getattr(params, f.name).detach().clone())
        self.reset_stats()

    @property
    def n_basis(self) -> int:
        return self.weight.shape[0]

    @property
    def timesteps(self) -> int:
        return self._timesteps

    def parameters_record(self) -> MBEParameters:
        return MBEParameters(**{f.name: getattr(self, f.name) for f in fields(MBEParameters)})

    def kernels(self):
        return self.parameters_record().kernels(self._timesteps)

    def readout(self):
        return self.weight, self.bias, self.input_offset

    def num_values(self) -> int:
        """Count of stored values (5 per basis in the paper; up to 9 per basis + 1 here)."""
        return sum(getattr(self, f.name).numel() for f in fields(MBEParameters))


class BinaryIdentity(MBENeuron):
    r"""An :class:`MBENeuron` whose kernels halve exactly each step: :math:`d_n[t] = \alpha^d_n 2^{-t}` (and so
    :math:`r, V^{th}`), what Eq. 4 gives for :math:`\Delta t / \tau = \ln 2` without ``exp``'s rounding. Its readout
    then has an exact closed form (:mod:`mbe.neuron.ladder`), which the fused path uses wherever it is bit for bit
    the simulation's. Built by :func:`binary_identity`; ``ValueError`` if the parameters do not halve."""

    def __init__(self, params: MBEParameters, timesteps: int, function: str = "identity", domain=(-1.0, 1.0), **kw):
        ratios = torch.cat([params.dt / params.tau_d, params.dt / params.tau_r, params.dt / params.tau_vth])
        if not torch.allclose(ratios.double(), torch.full_like(ratios, math.log(2.0), dtype=torch.float64)):
            raise ValueError(f"BinaryIdentity needs dt / tau = ln 2 for every kernel, got {ratios.tolist()}")
        super().__init__(params, timesteps, function, domain, **kw)

    def kernels(self):
        ladder = halvings(self.timesteps, self.alpha_d.dtype, self.alpha_d.device)[None, :]
        return tuple(alpha[:, None] * ladder for alpha in (self.alpha_d, self.alpha_r, self.alpha_vth))


def _round_up(value: float, bits: int) -> float:
    """``value > 0`` rounded up to ``bits`` significant bits."""
    mantissa, exponent = math.frexp(value)
    return math.ldexp(math.ceil(mantissa * 2.0**bits), exponent - bits)


def binary_identity(n_basis: int, timesteps: int, domain=(-1.0, 1.0)) -> BinaryIdentity:
    r"""The identity neuron in closed form: ``n_basis`` dithered binary expansions, averaged.

    Every basis is a greedy binary expansion (kernels halve each step, :math:`\Delta t/\tau = \ln 2`) with one
    leading level :math:`\alpha` for threshold, reset and output, so after T steps its output is its input less
    a residual in :math:`[0, q)`, :math:`q = \alpha\,2^{1-T}`. The bases' input offsets are staggered by
    :math:`q/N` (:math:`c_k = lo - k q / N`, :math:`k = 0..N-1`), so the mean of their residuals is a sawtooth
    of height :math:`q/N`; readout weights :math:`1/N` and the bias :math:`\bar c + q/2` centre it:

    .. math::
        \alpha = \frac{hi - lo}{2 (1 - 2^{-T})},\qquad
        |\hat x - x| \le \frac{q}{2N} = \frac{\alpha}{N\,2^{T}} \approx \frac{hi - lo}{N\,2^{T+1}}
        \quad (x \in [lo, hi]).

    (Up to the float32 rounding of the offsets and bias: measured 1.0002 times the bound at T=16; from about T=24 on
    they can no longer hold the :math:`q/N` stagger and the :math:`q/2` centring, and the error is up to :math:`q`,
    4.7e-10 at T=32.) On :math:`[-1, 1]` with N=8 that is 4.9e-4 at T=8 and 1.9e-6 at T=16, 4-8x below the shipped fitted
    identity tables (measured max errors 3.9e-3 and 1.5e-5); the paper fixes its identity neuron's parameters
    rather than fitting them, and this is a neuron of exactly its form (Eq. 4-8) with those parameters fixed.
    Any N >= 1 and T >= 1; no fit, so nothing to ship or cache. The kernels halve exactly
    (:class:`BinaryIdentity`), so in float64 (as products encode their operands) the readout takes the exact closed
    form of :mod:`mbe.neuron.ladder`. Below T = 30 the levels are :math:`\alpha` in float32 and the bases take the
    staggered form (one quotient for all of them) where N is a power of two. From T = 30 on :math:`\alpha` is rounded
    up to the most significant bits (at most :math:`53 - T`) at which the staggered form is still exact: its readout
    sums multiples of :math:`w q` and the float32 bias, which float64 holds only if :math:`\alpha` has few enough
    bits (N=8: 20 bits at T=30, 18 at T=32, up to T=49; a relative change of :math:`\alpha` below :math:`2^{1-bits}`,
    7.6e-6 at T=32, so the encoded range grows by as much). Where no precision gives it (N not a power of two, or T
    beyond), :math:`53 - T` bits and the per-basis closed form.
    """
    validate_counts(n_basis, timesteps)
    lo, hi = validate_domain(domain)
    alpha = (hi - lo) / (2.0 * (1.0 - 2.0**-timesteps))
    if timesteps < 30:
        return BinaryIdentity(_identity_parameters(n_basis, timesteps, lo, alpha), timesteps, "identity", (lo, hi))
    # float32 holds alpha exactly from here on. Each fewer bit rounds alpha up by at most a relative 2^-bits
    # (the encoded range only grows); the first precision whose staggered form is exact wins, else 53 - T bits
    for bits in range(min(24, 53 - timesteps), 0, -1):
        params = _identity_parameters(n_basis, timesteps, lo, _round_up(alpha, bits))
        wide = [v.double() for v in (params.alpha_d, params.weight, params.bias, params.input_offset)]
        if staggered_form(*wide, timesteps) is not None:
            break
    else:  # from T = 53 on no ladder fits float64: alpha as it is
        params = _identity_parameters(
            n_basis, timesteps, lo, _round_up(alpha, 53 - timesteps) if timesteps < 53 else alpha
        )
    return BinaryIdentity(params, timesteps, "identity", (lo, hi))


def _identity_parameters(n_basis: int, timesteps: int, lo: float, alpha: float) -> MBEParameters:
    """:func:`binary_identity`'s parameters (float32) for the leading level ``alpha``."""
    step = alpha * 2.0 ** (1 - timesteps)
    offsets = lo - torch.arange(n_basis, dtype=torch.float64) * step / n_basis

    def full(value: float) -> Tensor:
        return torch.full((n_basis,), value, dtype=torch.float32)

    return MBEParameters(
        alpha_d=full(alpha),
        alpha_r=full(alpha),
        alpha_vth=full(alpha),
        tau_d=full(1.0),
        tau_r=full(1.0),
        tau_vth=full(1.0),
        dt=full(math.log(2.0)),
        weight=full(1.0 / n_basis),
        input_offset=offsets.float(),
        bias=torch.tensor(float(offsets.mean()) + step / 2, dtype=torch.float32),
    )
