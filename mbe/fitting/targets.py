"""What a fit approximates: the target function and its domain, the training samples, and the MSE
grid a fitted neuron is measured on."""

from __future__ import annotations

import warnings
from typing import Callable, Union

import torch
from torch import Tensor

from ..functions import FunctionSpec, get_function
from ..neuron.base import validate_domain
from .recipes import FitRecipe


def resolve_target(target: Union[str, FunctionSpec, Callable], domain) -> tuple[str, Callable, tuple]:
    if isinstance(target, str):
        spec = get_function(target)
        return spec.name, spec.fn, validate_domain(domain if domain is not None else spec.domain)
    if isinstance(target, FunctionSpec):
        return target.name, target.fn, validate_domain(domain if domain is not None else target.domain)
    if callable(target):
        if domain is None:
            raise ValueError("a callable target needs an explicit domain=(low, high)")
        return getattr(target, "__name__", "custom"), target, validate_domain(domain)
    raise TypeError(f"target must be a registered name, a FunctionSpec or a callable, got {type(target).__name__}")


def evaluation_grid(domain, points: int = 10_000, dtype=torch.float32) -> Tensor:
    """``points`` evenly spread points covering the closed domain (the MSE grid of Table X)."""
    lo, hi = validate_domain(domain)
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an integer >= 2, got {points!r}")
    return torch.linspace(lo, hi, points, dtype=torch.float64).to(dtype)


@torch.no_grad()
def neuron_mse(neuron, fn: Callable, domain=None, points: int = 10_000) -> float:
    """MSE of ``neuron`` against ``fn`` on ``points`` evenly spread points of ``domain``.

    ``domain`` defaults to the neuron's own; a wider one counts clamping error honestly.
    """
    domain = neuron.domain if domain is None else domain
    x = evaluation_grid(domain, points)
    ref = fn(x.double())
    prev = neuron.stats
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = neuron(x).double()
    finally:
        neuron.stats = prev
    return float(((y - ref) ** 2).mean())


#: the share of a density-weighted fit's training points drawn uniformly over the whole domain: a floor, so
#: no part of the domain is left unfitted however rarely the calibration data reached it
DENSITY_FLOOR = 0.2


def check_density(density, domain) -> Tensor:
    """The finite values of ``density`` (a sample of the inputs a neuron will see) inside ``domain``, float64."""
    if not isinstance(density, Tensor):
        raise TypeError(f"density must be a tensor of sample inputs, got {type(density).__name__}")
    d = density.detach().reshape(-1).double().cpu()
    lo, hi = domain
    d = d[torch.isfinite(d) & (d >= lo) & (d <= hi)]
    if d.numel() < 2:
        raise ValueError(f"density needs at least 2 finite values inside the domain {domain}, got {d.numel()}")
    return d


def smoothing_bandwidth(d: Tensor) -> float:
    """Silverman's robust kernel bandwidth ``0.9 min(std, IQR / 1.34) n^(-1/5)`` of the sample ``d``."""
    q1, q3 = torch.quantile(d, torch.tensor([0.25, 0.75], dtype=d.dtype))
    spread = min(float(d.std()), float(q3 - q1) / 1.34) or float(d.std())
    return 0.9 * spread * d.numel() ** -0.2


def training_samples(name: str, fn: Callable, domain, rec: FitRecipe, seed: int, density=None):
    """``samples`` random points of the domain (seeded) and the target there (float64).

    Uniform over the domain, or with ``density`` (a sample of the inputs the neuron will see) drawn from
    that sample smoothed by a Gaussian kernel (:func:`smoothing_bandwidth`) for ``1 - DENSITY_FLOOR`` of the
    points and uniformly for the rest: the MSE the fit minimises is then weighted by the data's density.
    """
    gen = torch.Generator().manual_seed(seed)
    lo, hi = domain
    x = lo + (hi - lo) * torch.rand(rec.samples, generator=gen, dtype=torch.float64)
    if density is not None:
        d = check_density(density, domain)
        n_data = rec.samples - round(rec.samples * DENSITY_FLOOR)
        pick = d[torch.randint(d.numel(), (n_data,), generator=gen)]
        jitter = smoothing_bandwidth(d) * torch.randn(n_data, generator=gen, dtype=torch.float64)
        x[:n_data] = (pick + jitter).clamp(lo, hi)
    y = fn(x).double()
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"target {name!r} is not finite everywhere on {domain}; choose a narrower domain")
    return gen, x, y
