"""What every spiking neuron module shares: input checks, domain clamping, statistics, dispatch.

The dynamics themselves live in :mod:`mbe.neuron.functional`; subclasses only say how to turn
their stored parameters into kernels ``d, r, vth [N, T]``, a readout ``weight [N]``, a ``bias`` and
per-basis ``input_offset [N]``.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from ..stats import SpikeStats
from . import lookup
from .compiled import (
    compile_enabled,
    compiled_elementwise,
    compiled_readout,
    compiled_table_readout,
    pad_to_bucket,
)
from .functional import NeuronOutput, check_finite, clamp_to_domain, simulate
from .ladder import halving_levels, ladder_readout, staggered_form, staggered_readout

BACKENDS = ("auto", "torch", "triton")


class DomainWarning(UserWarning):
    """Inputs fell outside a neuron's fitted domain and were clamped."""


def validate_domain(domain) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise ValueError(f"domain must be a pair (low, high) of numbers, got {domain!r}") from None
    if not (torch.isfinite(torch.tensor([lo, hi])).all() and lo < hi):
        raise ValueError(f"domain must be finite with low < high, got ({lo}, {hi})")
    return lo, hi


def validate_counts(n_basis: int, timesteps: int) -> None:
    for name, v, top in (("n_basis", n_basis, 64), ("timesteps", timesteps, 64)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
            raise ValueError(f"{name} must be an integer in [1, {top}], got {v!r}")


class SpikingNeuron(nn.Module):
    """Base class: a fitted neuron for one function on one input domain.

    Calling the module checks the input is finite (``ValueError`` otherwise), clamps it into
    ``domain`` (counting clamped elements and warning once per module, naming function and domain),
    runs the dynamics and updates :attr:`stats`.

    Args:
        function: name of the approximated function (for messages and reports).
        domain: ``(low, high)`` input interval the neuron was fitted on.
        backend: ``"auto"`` (Triton for CUDA tensors when Triton is installed, else torch),
            ``"torch"`` or ``"triton"``.
    """

    def __init__(self, function: str, domain, backend: str = "auto"):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.function = str(function)
        self.domain = validate_domain(domain)
        self.backend = backend
        self._warned = False
        self.stats = SpikeStats(self.function)
        self._kernel_cache: dict = {}

    # --- subclasses provide these -------------------------------------------------------------
    @property
    def n_basis(self) -> int:
        raise NotImplementedError

    @property
    def timesteps(self) -> int:
        raise NotImplementedError

    def kernels(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(d, r, vth)``, each ``[N, T]``."""
        raise NotImplementedError

    def readout(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(weight [N], bias [], input_offset [N])``."""
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------------
    def reset_stats(self) -> None:
        self.stats = SpikeStats(self.function, self.n_basis, self.timesteps)

    def _use_triton(self, x: Tensor) -> bool:
        if self.backend == "torch":
            return False
        if self.backend == "triton":
            return True
        from ..kernels import triton_available

        return x.is_cuda and triton_available()

    def _cached(self, key: tuple, build):
        """``build()``, cached under ``key`` until a parameter or buffer changes (in place or replaced) or T
        does; never cached while any requires grad."""
        state = tuple(self.buffers()) + tuple(self.parameters())
        key = (*key, self.timesteps)
        hit = self._kernel_cache.get(key)
        if (
            hit is not None
            and len(hit[0]) == len(state)
            and all(a is b and a._version == v for (a, v), b in zip(hit[0], state, strict=True))
        ):
            return hit[1]
        value = build()
        if not any(t.requires_grad for t in state):
            self._kernel_cache[key] = (tuple((t, t._version) for t in state), value)
        return value

    def prepared(self, dtype: torch.dtype, device: torch.device, padded: bool = False) -> tuple[Tensor, ...]:
        """``(d, r, vth, weight, bias, input_offset)`` in ``dtype`` on ``device``; with ``padded``, the kernels
        padded to the compile bucket (:func:`mbe.neuron.compiled.pad_to_bucket`). Cached (:meth:`_cached`)."""

        def build():
            d, r, vth = self.kernels()
            weight, bias, offset = self.readout()
            d, r, vth, weight, bias = (v.to(device=device, dtype=dtype) for v in (d, r, vth, weight, bias))
            offset = None if offset is None else offset.to(device=device, dtype=dtype)
            if padded:
                d, r, vth, weight, offset = pad_to_bucket(d, r, vth, weight, offset)
            return d, r, vth, weight, bias, offset

        return self._cached((dtype, device, padded), build)

    def ladder(self, dtype: torch.dtype, device: torch.device) -> Optional[tuple]:
        """``(readout, args)`` when the neuron's kernels in ``dtype`` are halving ladders whose closed form is exact
        there (:func:`mbe.neuron.ladder.halving_levels`): :func:`mbe.neuron.ladder.staggered_readout` where the
        bases are one ladder at staggered offsets (:func:`mbe.neuron.ladder.staggered_form`), else
        :func:`mbe.neuron.ladder.ladder_readout`; ``readout(x, *args)`` is the readout. ``None`` for any other
        neuron. Cached (:meth:`_cached`)."""

        def build():
            d, r, vth, weight, bias, offset = self.prepared(dtype, device)
            alpha = halving_levels(d, r, vth)
            if alpha is None:
                return None
            staggered = staggered_form(alpha, weight, bias, offset, self.timesteps)
            if staggered is not None:
                return staggered_readout, staggered
            top = torch.tensor(2.0**self.timesteps - 1, dtype=dtype, device=device)
            wide = self.timesteps >= 31  # spike counts in int64 from T = 31 on
            return ladder_readout, (alpha * 2.0 ** (1 - self.timesteps), top, weight, bias, offset, wide)

        return self._cached(("ladder", dtype, device), build)

    def lookup_table(self, build: bool = True) -> Optional[lookup.LookupTable]:
        """The neuron's exact readout table (:mod:`mbe.neuron.lookup`; float32, CPU), built on first request
        (``build=False``: only if already built), ``None`` where it would be too large. Cached (:meth:`_cached`)."""
        key = ("table",)
        if not build:
            hit = self._kernel_cache.get((*key, self.timesteps))
            return hit[1] if hit is not None else None
        return self._cached(
            key, lambda: lookup.build_table(*self.prepared(torch.float32, torch.device("cpu")), self.domain)
        )

    def _table_for(self, x: Tensor) -> Optional[lookup.LookupTable]:
        """The table for a fused readout of ``x`` when tables are on (``MBE_TABLES=1``), ``x`` is float32 on the
        CPU and ``N T`` is above :data:`~mbe.neuron.lookup.MIN_STEPS`; built on first use."""
        if not lookup.tables_enabled() or x.dtype != torch.float32 or x.is_cuda:
            return None
        return self.lookup_table() if self.n_basis * self.timesteps > lookup.MIN_STEPS else None

    def evaluate(self, x: Tensor, *, return_spikes: bool = False) -> tuple[NeuronOutput, int]:
        """Check, clamp and simulate without touching :attr:`stats` or warning.

        Returns the :class:`NeuronOutput` (spike counts always filled) and the number of inputs that
        were clamped into :attr:`domain`. Operators that share one neuron across sites call this and
        keep their own statistics.
        """
        x, outside = self._checked(x)
        if not return_spikes and x.dtype != torch.float64 and self._use_triton(x):
            from ..kernels import mbe_forward_triton

            d, r, vth = self.kernels()
            weight, bias, offset = self.readout()
            out, counts = mbe_forward_triton(x, d, r, vth, weight, bias, offset)
            return NeuronOutput(out, None, counts), outside
        in_dtype = x.dtype
        if x.element_size() < 4:  # fp16/bf16 cannot hold a 16-step threshold ladder: compute in fp32
            x = x.float()
        if return_spikes:
            d, r, vth, weight, bias, offset = self.prepared(x.dtype, x.device)
            res = simulate(x, d, r, vth, weight, bias, offset, return_spikes=True, return_counts=True)
        else:  # fused: compiled on CPU (mbe.neuron.compiled), O(input) memory, same numbers as simulate
            padded = compile_enabled() and not x.is_cuda
            ladder = self.ladder(x.dtype, x.device)
            table = None if ladder is not None else self._table_for(x)
            if ladder is not None:
                out, counts = compiled_elementwise(ladder[0], x, *ladder[1])
            elif table is not None:
                out, counts = compiled_table_readout(x, table, *self.prepared(x.dtype, x.device, padded))
            else:
                out, counts = compiled_readout(x, *self.prepared(x.dtype, x.device, padded))
            res = NeuronOutput(out, None, counts)
        if in_dtype != x.dtype:
            res.output = res.output.to(in_dtype)
        return res, outside

    def _checked(self, x: Tensor) -> tuple[Tensor, int]:
        """``x`` checked finite and clamped into :attr:`domain`, with how many inputs moved. One reduction
        and one host sync in the common case (every input finite and inside), the full checks otherwise."""
        if isinstance(x, Tensor) and torch.is_floating_point(x) and x.numel():
            lo, hi = torch.aminmax(x)
            low, high = torch.stack([lo, hi]).tolist()  # NaN propagates: a NaN anywhere fails the test below
            if self.domain[0] <= low and high <= self.domain[1]:
                return x, 0
        check_finite(x, f"{type(self).__name__}({self.function!r})")
        return clamp_to_domain(x, self.domain)

    def run(self, x: Tensor, *, return_spikes: bool = False, return_counts: bool = True) -> NeuronOutput:
        """Full simulation: decoded output and, on request, spike trains ``[N, T, ...]`` and counts ``[...]``.

        Updates :attr:`stats`; inputs outside :attr:`domain` are clamped, counted in
        ``stats.clamped`` and reported by one :class:`DomainWarning` per neuron.
        """
        res, outside = self.evaluate(x, return_spikes=return_spikes)
        if outside:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{type(self).__name__}({self.function!r}): {outside} input(s) fell outside the "
                    f"fitted domain {self.domain} and were clamped to it (counted in .stats.clamped; "
                    f"this warning is shown once per neuron). Refit on a wider domain if they matter.",
                    DomainWarning,
                    stacklevel=3,
                )
        self.stats.n_basis, self.stats.timesteps = self.n_basis, self.timesteps
        self.stats.record(elements=x.numel(), spikes=int(res.spike_counts.sum(dtype=torch.float64)), clamped=outside)
        if not return_counts:
            res.spike_counts = None
        return res

    def forward(self, x: Tensor) -> Tensor:
        """Decoded output, shaped like ``x``."""
        return self.run(x, return_counts=False).output

    def extra_repr(self) -> str:
        return (
            f"function={self.function!r}, domain={self.domain}, n_basis={self.n_basis}, "
            f"timesteps={self.timesteps}, backend={self.backend!r}"
        )
