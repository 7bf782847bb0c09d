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

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .base import SpikingNeuron, validate_counts
from .functional import exponential_kernel

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
