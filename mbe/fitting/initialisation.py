r"""Where a fit starts: the halving initialisation (the paper's), or ramps (the project's).

A halving basis with offset :math:`c` and leading level :math:`A` is a :math:`T`-bit quantiser of
:math:`\mathrm{clamp}(x - c, 0, 2A)`, a "ramp". The ramp init fits
:math:`b + \sum_n w_n \mathrm{clamp}(x - c_n, 0, L_n)` (a smooth free-knot piecewise-linear problem) and
starts basis :math:`n` at :math:`c_n`, :math:`A_n = L_n/2`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .recipes import FitRecipe
from .state import MBEFitState
from .targets import evaluation_grid


def _ramp_features(x: Tensor, c: Tensor, length: Tensor) -> Tensor:
    """``clamp(x - c, 0, L)`` for a batch of ramp sets: ``c, L [R, N]``, ``x [M]`` -> ``[R, M, N]``."""
    return torch.minimum(torch.relu(x[None, :, None] - c[:, None, :]), length[:, None, :])


def _batched_lstsq(a: Tensor, y: Tensor, ridge: float = 1e-10) -> Tensor:
    """Least squares for a batch ``a [R, M, K]``, ``y [M]`` via column-scaled normal equations."""
    scale = a.abs().amax(1, keepdim=True).clamp_min(1e-30)
    an = a / scale
    gram = an.transpose(1, 2) @ an
    gram = (
        gram + ridge * torch.eye(gram.shape[-1], dtype=a.dtype) * gram.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    )
    rhs = an.transpose(1, 2) @ y[None, :, None]
    return (torch.linalg.solve(gram, rhs)[..., 0]) / scale[:, 0, :]


def fit_ramps(
    x: Tensor, y: Tensor, n_basis: int, domain, restarts: int, steps: int, gen: torch.Generator, fit_points: int = 2000
) -> tuple[Tensor, Tensor]:
    """Free-knot ramp fit of ``b + sum_n w_n clamp(x - c_n, 0, L_n)``: returns ``c [N]``, ``L [N]``.

    ``8 * restarts`` starts run as one batch (variable projection: Adam on the knots, least squares
    for ``w, b`` inside the loss). Start 0 puts ramp starts at quantiles of the ``|f''|^(2/5)`` knot
    density (optimal for piecewise-linear L2 fits) with spans reaching the domain's top; the others
    draw both knots of each ramp from that density.
    """
    import numpy as np

    lo, hi = domain
    width = hi - lo
    idx = torch.linspace(0, x.numel() - 1, min(fit_points, x.numel())).long()
    xs, order = torch.sort(x.double())
    xs, ys = xs[idx], y.double()[order][idx]
    grid = torch.linspace(lo, hi, 2049, dtype=torch.float64)
    yg = torch.from_numpy(np.interp(grid.numpy(), xs.numpy(), ys.numpy()))
    curv = ((yg[2:] - 2 * yg[1:-1] + yg[:-2]).abs() / (grid[1] - grid[0]) ** 2).pow(0.4)
    dens = curv + 1e-3 * curv.mean().clamp_min(1e-12)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(dens, 0)])
    cdf = (cdf / cdf[-1]).numpy()
    gi = np.linspace(lo, hi, cdf.size)

    def quantile(q: Tensor) -> Tensor:
        return torch.from_numpy(np.interp(q.numpy(), cdf, gi))

    n_starts = 8 * restarts
    q = torch.sort(torch.rand(n_starts, 2 * n_basis, generator=gen, dtype=torch.float64), dim=1).values
    knots = quantile(q.reshape(-1)).reshape(n_starts, 2 * n_basis)
    c0 = knots[:, :n_basis].clone()
    l0 = knots[:, n_basis:] - knots[:, :n_basis]
    half = torch.arange(n_starts) % 2 == 1  # every other start: one-sided ramps (ReLU-like)
    l0[half] = hi - c0[half]
    c0[0] = quantile((torch.arange(n_basis, dtype=torch.float64) + 0.5) / n_basis)
    l0[0] = hi - c0[0]
    l0 = l0.clamp_min(width * 1e-3)
    c = ((c0 - lo) / width).requires_grad_(True)
    ll = torch.log(l0 / width).requires_grad_(True)
    ones = torch.ones(n_starts, xs.numel(), 1, dtype=torch.float64)

    def losses() -> Tensor:
        feats = torch.cat([_ramp_features(xs, lo + c * width, ll.exp() * width), ones], 2)
        coef = _batched_lstsq(feats.detach(), ys)
        return ((feats @ coef[:, :, None])[..., 0] - ys).pow(2).mean(1)

    opt = torch.optim.Adam([c, ll], lr=0.01)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.99)
    for _ in range(steps):
        loss = losses()
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        best = int(torch.nan_to_num(losses(), nan=float("inf")).argmin())
    return lo + c.detach()[best] * width, ll.detach()[best].exp() * width


def initial_state(
    fn: Callable, x: Tensor, y: Tensor, n_basis: int, timesteps: int, domain, rec: FitRecipe, gen: torch.Generator
) -> MBEFitState:
    """The starting :class:`MBEFitState` for ``rec.init``: ``"ramps"`` (fitted knots) or ``"halving"``
    (one shared level, the target's largest magnitude; bases told apart by a seeded jitter of their taus)."""
    lo, _ = domain
    jitter = 0.1 * torch.randn(n_basis, generator=gen, dtype=torch.float64)
    if rec.init == "ramps":
        c, span = fit_ramps(x, y, n_basis, domain, rec.restarts, rec.ramp_steps, gen)
        levels = span / 2 if rec.decay else span / timesteps
        return MBEFitState(
            n_basis,
            timesteps,
            domain,
            rec,
            offsets=c,
            levels=levels,
            out_level=levels.clone(),
            weight=torch.ones(n_basis, dtype=torch.float64),
            bias=0.0,
            tau_jitter=torch.zeros(n_basis, dtype=torch.float64),
        )
    alpha = float(fn(evaluation_grid(domain, 10_001, torch.float64)).double().abs().max().clamp_min(1e-6))
    offsets = torch.full((n_basis,), lo if rec.input_shift == "per_basis" else 0.0, dtype=torch.float64)
    levels = torch.full((n_basis,), alpha, dtype=torch.float64)
    return MBEFitState(
        n_basis,
        timesteps,
        domain,
        rec,
        offsets=offsets,
        levels=levels,
        out_level=levels.clone(),
        weight=torch.full((n_basis,), 1.0 / n_basis, dtype=torch.float64),
        bias=0.0,
        tau_jitter=jitter if rec.decay else torch.zeros(n_basis, dtype=torch.float64),
    )
