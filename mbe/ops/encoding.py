r"""Encoding activations as spike trains with the identity neuron, and running fitted neurons at a site.

An operand :math:`x` with encoding range :math:`[lo, hi]` is mapped to :math:`z = (x - m)/h \in [-1, 1]`
(:math:`m, h` the range's midpoint and half-width) and encoded by the shipped identity neuron
(N = 8 by default). Its decoded value is

.. math:: \hat x = A_0 + \sum_{k} D_k\, S_k, \qquad A_0 = m + h\,b, \quad D_{(n,t)} = h\, w_n\, d_n[t]

with :math:`S_k` the binary spike of slot :math:`k = (n, t)`. Products of two encoded operands are
then sums over spike pairs with intensities :math:`D^a_k D^b_j` (paper Eq. 9-12), see
:mod:`mbe.ops.products`.

**Headroom.** An input beyond the range (:math:`|z| > 1`, one the calibration never saw) is not clamped to
its edge: it is encoded by the same neuron on a tail :math:`R` (:data:`HEADROOM`) times as wide next to the
range, :math:`z = \pm(1 + R) + R\,z'` with :math:`z' \in [-1, 1]`, so its spikes carry :math:`R` times the
intensity (a per-element gain :math:`g = R`, :math:`A_0 = m + h(\pm(1 + R) + R\,b)`) and its error is
:math:`R` times the range's. The range reaches :math:`1 + 2R` half-widths from its middle that way; inputs
beyond that are clamped and counted. Inputs inside the range are encoded exactly as without headroom.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import Tensor

from ..neuron.base import DomainWarning, SpikingNeuron, validate_counts
from ..neuron.compiled import compiled_elementwise
from ..neuron.functional import check_finite
from ..neuron.mbe import MBENeuron
from ..stats import OpStats
from ..tables import neuron_for

MODES = ("fused", "event")
#: how many times the encoding range's width a tail beyond each edge covers (see the module docstring)
HEADROOM = 4.0
Range = Optional[tuple[float, float]]


@functools.lru_cache(maxsize=128)
def site_neuron(function: str, timesteps: int, n_basis: Optional[int] = None) -> MBENeuron:
    """The shipped neuron for ``function`` (cached; shared read-only across sites), fitted on demand and
    cached on disk for an (N, T) the package does not ship (:func:`mbe.tables.neuron_for`)."""
    return neuron_for(function, n_basis, timesteps)


def pick_neuron(
    function: str, timesteps: int, n_basis: Optional[int] = None, neurons: Optional[Mapping[str, SpikingNeuron]] = None
) -> SpikingNeuron:
    """``neurons[function]`` when the caller supplies one (e.g. FS neurons for a comparison), else the
    MBE neuron for ``(function, n_basis, timesteps)`` (shipped, or fitted once and cached; above T=16 possibly
    a neuron of fewer steps, see :func:`mbe.tables.better_of`).

    A neuron of T' <= T steps may serve an operator at T: it spikes in the first T' steps and is silent for the
    rest, so its output is what it computes at T'. A neuron of more steps than the operator has is an error."""
    if neurons is not None and function in neurons:
        neuron = neurons[function]
        if neuron.timesteps > timesteps:
            raise ValueError(
                f"supplied {function!r} neuron has T={neuron.timesteps}, more steps than the operator's T={timesteps}"
            )
        return neuron
    return site_neuron(function, timesteps, n_basis)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def check_args(mode: str, timesteps: int, n_basis: Optional[int]) -> None:
    """Every operator's common arguments: ``mode``, ``timesteps`` and (when given) ``n_basis``."""
    check_mode(mode)
    validate_counts(1 if n_basis is None else n_basis, timesteps)


def resolve_range(x: Tensor, given: Range, what: str) -> tuple[float, float]:
    """A calibrated ``(lo, hi)`` or, when ``None``, the input's own ``(min, max)`` (widened if flat)."""
    if given is None:
        if x.numel() == 0:
            return (-1.0, 1.0)
        lo, hi = float(x.detach().min()), float(x.detach().max())
    else:
        try:
            lo, hi = (float(v) for v in given)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: range must be a pair (low, high), got {given!r}") from None
        if not (lo <= hi) or lo != lo or hi != hi:
            raise ValueError(f"{what}: range must satisfy low <= high, got ({lo}, {hi})")
    if hi - lo < 1e-12 * max(1.0, abs(lo), abs(hi)):
        pad = max(1e-6, 1e-6 * abs(lo))
        lo, hi = lo - pad, hi + pad
    return lo, hi


def warn_saturation(what: str, count: int, rng) -> None:
    if count:
        rng = tuple(round(float(v), 6) for v in rng)
        warnings.warn(
            f"{what}: {count} input(s) fell outside the encoding range {rng} and were clamped "
            f"(counted as clamped in the op statistics); recalibrate the range if they matter.",
            DomainWarning,
            stacklevel=4,
        )


def run_site_neuron(
    x: Tensor,
    function: str,
    timesteps: int,
    *,
    n_basis: Optional[int] = None,
    key: str,
    stats: Optional[OpStats],
    return_spikes: bool = False,
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
):
    """Evaluate a fitted neuron at a site, recording spikes and clamped inputs under ``key``."""
    neuron = pick_neuron(function, timesteps, n_basis, neurons)
    res, clamped = neuron.evaluate(x, return_spikes=return_spikes)
    warn_saturation(key, clamped, neuron.domain)
    if stats is not None:
        stats.add(
            key,
            function=function,
            n_basis=neuron.n_basis,
            timesteps=timesteps,
            elements=x.numel(),
            spikes=int(res.spike_counts.sum(dtype=torch.float64)),
            clamped=clamped,
        )
    return res


@dataclass
class Encoded:
    """An operand encoded by the identity neuron.

    Attributes:
        decoded: :math:`\\hat x`, shaped like the input.
        counts: spikes per element, shaped like the input.
        const: :math:`A_0` (scalar tensor; shaped like the input with ``silent_zeros`` or headroom in use).
        intensity: :math:`D_k`, ``[K]`` with ``K = N * T`` (slot order ``n * T + t``).
        spikes: ``[K, ...]`` binary spike trains, only when requested.
        clamped: inputs clamped (beyond the range and its headroom).
        gain: each element's spikes carry ``gain`` times the intensity :math:`D_k` (1, or :data:`HEADROOM` for
            an input in a tail): a scalar tensor 1.0, or shaped like the input when some input is in a tail.
            :math:`\\hat x = A_0 + g \\sum_k D_k S_k`.
    """

    decoded: Tensor
    counts: Tensor
    const: Tensor
    intensity: Tensor
    spikes: Optional[Tensor]
    clamped: int
    gain: Tensor

    def weighted_spikes(self) -> Tensor:
        """``gain * spikes`` (``[K, ...]``): what each slot adds in units of :attr:`intensity`."""
        return self.spikes * self.gain


def in_closed_form(neuron: SpikingNeuron, z_min: float, z_max: float) -> bool:
    """Whether an operand whose scaled values ``z`` span ``[z_min, z_max]`` is encoded by the plain readout: inside
    ``[-1, 1]`` (no headroom tail) and inside the identity neuron's domain (nothing clamped). False for NaN."""
    return -1 <= z_min and z_max <= 1 and neuron.domain[0] <= z_min and z_max <= neuron.domain[1]


def midpoint_and_half_width(rng: tuple[float, float]) -> tuple[float, float]:
    """The encoding range's midpoint and half-width (Python floats), which map an operand to ``z = (x - mid) / half``."""
    lo, hi = rng
    return (lo + hi) / 2, (hi - lo) / 2


def scaled_extremes(rng: tuple[float, float], x_min: float, x_max: float) -> tuple[float, float]:
    """``z = (x - mid) / half`` of an operand's extremes over the range ``rng``: z is non-decreasing in x, so these are
    z's extremes (Python floats: the same IEEE double operations as on the tensor)."""
    mid, half = midpoint_and_half_width(rng)
    return (x_min - mid) / half, (x_max - mid) / half


def range_scalars(rng: tuple[float, float], device) -> tuple[Tensor, Tensor]:
    """The range's midpoint and half-width as 0-d float64 tensors (what :func:`decode_closed_form` takes), computed
    as :func:`encode` computes them."""
    return tuple(torch.tensor(v, dtype=torch.float64, device=device) for v in midpoint_and_half_width(rng))


def decode_closed_form(x: Tensor, mid: Tensor, half: Tensor, readout_fn, args: tuple) -> tuple[Tensor, Tensor]:
    r"""Decoded value and spike count of every element of ``x`` encoded over the range of midpoint ``mid`` and
    half-width ``half`` (0-d float64) by an identity neuron read in closed form (``readout_fn(z, *args)``, as
    :meth:`~mbe.neuron.base.SpikingNeuron.ladder` gives it): :math:`\hat x = m + h\,\mathrm{readout}((x - m) / h)`,
    the same operations as :func:`encode`'s steps, so one compiled pass gives the same numbers."""
    out, counts = readout_fn((x.to(torch.float64) - mid) / half, *args)
    return mid + half * out, counts


def encode(
    x: Tensor,
    rng: tuple[float, float],
    timesteps: int,
    *,
    n_basis: Optional[int] = None,
    return_spikes: bool = False,
    neurons: Optional[Mapping[str, SpikingNeuron]] = None,
    silent_zeros: bool = False,
) -> Encoded:
    """Encode ``x`` over ``rng`` with the identity neuron (see the module docstring).

    The encoding runs in float64 whatever ``x``'s dtype: decoded values, intensities and spikes are
    float64, so a product's ``fused`` result (from decoded values) and its ``event`` result (from spike
    pairs) differ only at 1e-16 relative. That matters where a product feeds a neuron (LayerNorm's
    variance into rsqrt): a neuron is a staircase, and a float32-level difference could move it a step.

    ``silent_zeros``: elements exactly 0 emit no spikes and decode to exactly 0 (their constant term
    is dropped too), e.g. masked attention probabilities, so masked keys contribute nothing.
    """
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        check_finite(x, "spiking operand")  # raises the TypeError
    neuron = pick_neuron("identity", timesteps, n_basis, neurons)
    mid, half = midpoint_and_half_width(rng)
    # z = (x - mid) / half is non-decreasing in x, so its extremes are those of x mapped: one reduction, one sync
    x_min, x_max = torch.stack(torch.aminmax(x.detach())).tolist() if x.numel() else (mid, mid)
    z_min, z_max = scaled_extremes(rng, x_min, x_max)
    if not (math.isfinite(z_min) and math.isfinite(z_max)):
        check_finite(x, "spiking operand")  # NaN or inf: raises, naming how many
    dtype = torch.float64
    in_tail = z_min < -1 or z_max > 1
    form = neuron.ladder(dtype, x.device) if not return_spikes and in_closed_form(neuron, z_min, z_max) else None
    d, _, _, weight, bias, _ = neuron.prepared(dtype, x.device)  # cached kernels in the compute dtype
    intensity = (half * weight[:, None] * d).reshape(-1)
    if form is not None:
        # scale, closed-form readout and decode in one compiled pass over x: the numbers of the steps below. x is
        # widened first: a float32 input makes Inductor tile the float64 body twice as wide (1.5x the time)
        decoded, counts = compiled_elementwise(decode_closed_form, x.to(dtype), *range_scalars(rng, x.device), *form)
        spikes, clamped, gain = None, 0, torch.ones((), dtype=dtype)
        const = mid + half * bias
    else:
        z = (x.to(dtype) - mid) / half
        if in_tail:  # headroom: z = shift + gain * z', z' in [-1, 1] (see the module docstring)
            beyond = z.abs() > 1
            shift = torch.where(beyond, torch.sign(z) * (1 + HEADROOM), 0.0)
            gain = torch.where(beyond, HEADROOM, 1.0).to(dtype)
            z = (z - shift) / gain
        res, clamped = neuron.evaluate(z, return_spikes=return_spikes)
        spikes = res.spikes.reshape(-1, *x.shape) if res.spikes is not None else None
        if in_tail:
            decoded = mid + half * (shift + gain * res.output)
            const = mid + half * (shift + gain * bias)
        else:
            gain = torch.ones((), dtype=dtype)
            decoded, const = mid + half * res.output, mid + half * bias
        counts = res.spike_counts
    if silent_zeros:
        keep = (x != 0).to(dtype)
        decoded, counts, const = decoded * keep, counts * keep, const * keep
        spikes = spikes * keep if spikes is not None else None
    return Encoded(
        decoded=decoded, counts=counts, const=const, intensity=intensity, spikes=spikes, clamped=clamped, gain=gain
    )
