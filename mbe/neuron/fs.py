r"""The Few-Spikes (FS) neuron of Stoeckl & Maass (2021), the baseline MBE improves on.

Three free values per step (3T in all), one basis:

.. math::
    u[0] = x - c,\quad s[t] = H(u[t] - V^{th}[t]),\quad u[t+1] = u[t] - r[t]\,s[t],\quad
    \hat f(x) = b + \sum_t d[t]\, s[t]

The paper's FS neuron has :math:`c = b = 0`; the project's recipe may learn the output bias and
shift the input by the domain's low end (a constant, so exact), see :mod:`mbe.fitting`.
Binary initialisation: :math:`V^{th}[t] = r[t] = R\,2^{-(t+1)}` for an input range :math:`R`
and :math:`d[t] = D\,2^{-(t+1)}` for an output range :math:`D`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .base import SpikingNeuron, validate_counts

PER_STEP = ("d", "r", "vth")


@dataclass
class FSParameters:
    """``d, r, vth``: ``[T]``; ``bias`` and ``input_offset``: scalars."""

    d: Tensor
    r: Tensor
    vth: Tensor
    bias: Tensor
    input_offset: Tensor

    def __post_init__(self):
        t = self.d.shape[0] if self.d.dim() == 1 else -1
        for name in PER_STEP:
            v = getattr(self, name)
            if v.dim() != 1 or v.shape[0] != t:
                raise ValueError(f"FSParameters.{name} must have shape [T]=[{t}], got {tuple(v.shape)}")
        for name in ("bias", "input_offset"):
            if getattr(self, name).dim() != 0:
                raise ValueError(f"FSParameters.{name} must be a scalar tensor")

    @property
    def timesteps(self) -> int:
        return self.d.shape[0]

    def kernels(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.d[None], self.r[None], self.vth[None]

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name).detach().cpu().double().tolist() for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict, dtype=torch.float32) -> "FSParameters":
        return cls(**{f.name: torch.tensor(data[f.name], dtype=dtype) for f in fields(cls)})

    def detach(self) -> "FSParameters":
        return FSParameters(**{f.name: getattr(self, f.name).detach().clone() for f in fields(self)})

    @classmethod
    def binary(
        cls, timesteps: int, in_range: float, out_range: float, input_offset: float = 0.0, bias: float = 0.0
    ) -> "FSParameters":
        """Binary initialisation: thresholds and resets halve each step (a T-bit code of ``in_range``)."""
        validate_counts(1, timesteps)
        halves = torch.pow(2.0, -torch.arange(1, timesteps + 1, dtype=torch.float64))
        return cls(
            d=(out_range * halves).float(),
            r=(in_range * halves).float(),
            vth=(in_range * halves).float(),
            bias=torch.tensor(float(bias)),
            input_offset=torch.tensor(float(input_offset)),
        )

    @classmethod
    def random(
        cls,
        timesteps: int,
        in_range: float,
        out_range: float,
        input_offset: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> "FSParameters":
        """Random initialisation: each value uniform in (0, range/2] (the baseline binary init beats)."""
        validate_counts(1, timesteps)

        def draw(scale):
            return (torch.rand(timesteps, generator=generator, dtype=torch.float64) * scale / 2).float()

        return cls(
            d=draw(out_range),
            r=draw(in_range),
            vth=draw(in_range),
            bias=torch.tensor(0.0),
            input_offset=torch.tensor(float(input_offset)),
        )


class FSNeuron(SpikingNeuron):
    """A Few-Spikes neuron (module form); same call contract as :class:`~mbe.neuron.mbe.MBENeuron`.

    Args:
        params: :class:`FSParameters`, stored as buffers.
        function, domain, backend: see :class:`~mbe.neuron.base.SpikingNeuron`.
    """

    def __init__(self, params: FSParameters, function: str = "custom", domain=(-1.0, 1.0), backend: str = "auto"):
        super().__init__(function, domain, backend)
        for f in fields(params):
            self.register_buffer(f.name, getattr(params, f.name).detach().clone())
        self.reset_stats()

    @property
    def n_basis(self) -> int:
        return 1

    @property
    def timesteps(self) -> int:
        return self.d.shape[0]

    def parameters_record(self) -> FSParameters:
        return FSParameters(**{f.name: getattr(self, f.name) for f in fields(FSParameters)})

    def kernels(self):
        return self.d[None], self.r[None], self.vth[None]

    def readout(self):
        return torch.ones(1, dtype=self.d.dtype, device=self.d.device), self.bias, self.input_offset[None]

    def num_values(self) -> int:
        return 3 * self.timesteps
