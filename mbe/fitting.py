r"""Training-free fitting: one neuron per primitive function, fitted offline and reused network-wide.

The loss is the MSE between the neuron's decoded output and the target on ``samples`` uniform random
points of the domain (paper: M = 10,000), minimised by Adam through a surrogate gradient of the
Heaviside spike function. Two recipes:

``paper``
    The paper's stated settings and nothing more (appendix G.1): lr 0.01, 200 epochs (one
    full-batch step each), exponential lr decay 0.99; one shared level :math:`\alpha` (the target's
    maximum magnitude) for every kernel; learnable :math:`\tau^d, \tau^r, \tau^{th}, \Delta t, w`;
    no input offset, no output bias; halving initialisation (:math:`\Delta t/\tau = \ln 2`), the
    bases told apart by a small seeded perturbation of their :math:`\tau` (the paper is silent).

``best``
    The project's recipe. Every addition is a switch of :class:`FitRecipe`:

    - ``input_shift="per_basis"``: basis :math:`n` starts at :math:`u_n[0] = x - c_n` with a learnable
      offset :math:`c_n`. Handles signed inputs (thresholds are positive, so a negative membrane never
      fires) and lets each basis cover its own sub-interval.
    - ``per_basis_levels``: learnable leading levels :math:`\alpha^r_n, \alpha^{th}_n, \alpha^d_n`, so
      bases are not nested copies of one code.
    - ``least_squares``: the readout :math:`(w, b)` is linear given the spikes; it is solved exactly
      (float64 least squares) every ``ls_every`` steps and at the end.
    - ``output_bias``: a learnable constant :math:`b` in the readout.
    - ``init="ramps"``: a halving basis with offset :math:`c` and leading level :math:`A` is a
      :math:`T`-bit quantiser of :math:`\mathrm{clamp}(x - c, 0, 2A)`, a "ramp". The init first fits
      :math:`b + \sum_n w_n \mathrm{clamp}(x - c_n, 0, L_n)` (a smooth free-knot piecewise-linear
      problem, ``restarts`` starts) and sets :math:`c_n`, :math:`A_n = L_n/2` from it; the surrogate
      phase then refines every value. The best exact-MSE state seen is kept.

Both recipes are deterministic for a given ``seed`` (CPU, one thread or many).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from .functions import FunctionSpec, get_function
from .neuron.base import validate_counts, validate_domain
from .neuron.fs import FSNeuron, FSParameters
from .neuron.functional import SigmoidSurrogate, heaviside, simulate
from .neuron.mbe import MBENeuron, MBEParameters

LN2 = math.log(2.0)


@dataclass(frozen=True)
class FitRecipe:
    """All settings of a fit; see the module docstring for what each switch does."""

    name: str = "best"
    samples: int = 10_000
    epochs: int = 200
    lr: float = 0.01
    lr_decay: float = 0.99
    surrogate_slope: float = 4.0
    decay: bool = True
    init: str = "halving"  # "halving" | "ramps"
    input_shift: str = "none"  # "none" | "per_basis"
    per_basis_levels: bool = False
    output_bias: bool = False
    least_squares: bool = False
    ls_every: int = 10
    restarts: int = 1
    ramp_steps: int = 300

    def __post_init__(self):
        if self.init not in ("halving", "ramps"):
            raise ValueError(f"FitRecipe.init must be 'halving' or 'ramps', got {self.init!r}")
        if self.input_shift not in ("none", "per_basis"):
            raise ValueError(f"FitRecipe.input_shift must be 'none' or 'per_basis', got {self.input_shift!r}")
        if self.init == "ramps" and self.input_shift != "per_basis":
            raise ValueError("FitRecipe.init='ramps' needs input_shift='per_basis'")
        for name in ("samples", "epochs", "restarts", "ls_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"FitRecipe.{name} must be >= 1, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES: dict[str, FitRecipe] = {
    "paper": FitRecipe(name="paper"),
    "best": FitRecipe(
        name="best", epochs=300, lr=0.003, lr_decay=0.995, init="ramps", input_shift="per_basis",
        per_basis_levels=True, output_bias=True, least_squares=True, ls_every=10, restarts=4,
    ),
}


def get_recipe(recipe: Union[str, FitRecipe]) -> FitRecipe:
    if isinstance(recipe, FitRecipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)} or pass a FitRecipe") from None


@dataclass
class FitResult:
    """A fitted neuron with the numbers that describe how it was made."""

    neuron: Union[MBENeuron, FSNeuron]
    mse: float  # on ``eval_points`` evenly spread points of the domain
    train_mse: float
    seconds: float
    recipe: FitRecipe
    seed: int
    history: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _resolve_target(target: Union[str, FunctionSpec, Callable], domain) -> tuple[str, Callable, tuple]:
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
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = neuron(x).double()
    finally:
        neuron.stats = prev
    return float(((y - ref) ** 2).mean())


def _lstsq(features: Tensor, y: Tensor, bias: bool) -> tuple[Tensor, Tensor]:
    """Least-squares readout in float64: ``y ~ features.T @ w (+ b)``; features ``[K, M]``."""
    a = features.double().T
    if bias:
        a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
    scale = a.abs().amax(0).clamp_min(1e-30)
    sol = torch.linalg.lstsq(a / scale, y.double()[:, None], driver="gelsd").solution[:, 0] / scale
    if bias:
        return sol[:-1], sol[-1]
    return sol, torch.zeros((), dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# MBE parametrisation for fitting (raw, unconstrained values -> MBEParameters)
# --------------------------------------------------------------------------------------------
class _MBEFitState:
    """Learnable raw values. Levels and offsets are in units of the domain width, taus in log space."""

    def __init__(self, n_basis: int, timesteps: int, domain, recipe: FitRecipe, *, offsets: Tensor,
                 levels: Tensor, out_level: Tensor, weight: Tensor, bias: float, tau_jitter: Tensor):
        lo, hi = domain
        self.lo, self.width = lo, hi - lo
        self.timesteps = timesteps
        self.recipe = recipe
        n = n_basis
        rate = LN2 if recipe.decay else 0.0
        f64 = dict(dtype=torch.float64)
        # Eq. 4 rate dt/tau: dt = exp(log_dt), tau = exp(log_tau). Start with dt = 1, tau = 1/rate.
        log_tau0 = -math.log(rate) if rate > 0 else 0.0
        self.log_tau = {k: (torch.full((n,), log_tau0, **f64) + tau_jitter).requires_grad_(recipe.decay)
                        for k in ("d", "r", "vth")}
        self.log_dt = torch.zeros(n, **f64).requires_grad_(recipe.decay)
        shared = not recipe.per_basis_levels
        lvl = levels[:1] if shared else levels
        # the paper's alpha is a fixed constant; per-basis levels are the project's learnable addition
        self.log_level_r = torch.log(lvl / self.width).clone().requires_grad_(recipe.per_basis_levels)
        self.log_level_vth = torch.log(lvl / self.width).clone().requires_grad_(recipe.per_basis_levels)
        od = out_level[:1] if shared else out_level
        self.log_level_d = torch.log(od).clone().requires_grad_(recipe.per_basis_levels and not recipe.least_squares)
        self.offset = ((offsets - lo) / self.width).clone().requires_grad_(recipe.input_shift == "per_basis")
        self.weight = weight.clone().requires_grad_(not recipe.least_squares)
        self.bias = torch.tensor(float(bias), **f64).requires_grad_(recipe.output_bias and not recipe.least_squares)
        self.n = n

    def tensors(self) -> list[Tensor]:
        ts = [*self.log_tau.values(), self.log_dt, self.log_level_r, self.log_level_vth,
              self.log_level_d, self.offset, self.weight, self.bias]
        return [t for t in ts if t.requires_grad]

    def params(self) -> MBEParameters:
        n = self.n
        rate_scale = self.log_dt.exp() if self.recipe.decay else torch.zeros(n, dtype=torch.float64)
        def expand(v: Tensor) -> Tensor:  # a shared level ([1]) broadcasts to every basis
            return v.expand(n)

        return MBEParameters(
            alpha_d=expand(self.log_level_d.exp()),
            alpha_r=expand(self.log_level_r.exp() * self.width),
            alpha_vth=expand(self.log_level_vth.exp() * self.width),
            tau_d=self.log_tau["d"].exp(), tau_r=self.log_tau["r"].exp(), tau_vth=self.log_tau["vth"].exp(),
            dt=rate_scale,
            weight=self.weight,
            input_offset=self.lo + self.offset * self.width,
            bias=self.bias,
        )

    def snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in vars(self).items() if isinstance(v, Tensor)} | {
            "log_tau": {k: v.detach().clone() for k, v in self.log_tau.items()}}

    def restore(self, snap: dict) -> None:
        with torch.no_grad():
            for k, v in snap.items():
                if k == "log_tau":
                    for kk, vv in v.items():
                        self.log_tau[kk].copy_(vv)
                else:
                    getattr(self, k).copy_(v)

    def set_readout(self, w: Tensor, b: Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(w)
            self.bias.copy_(b)


def _basis_outputs(p: MBEParameters, x: Tensor, timesteps: int, spike_fn=heaviside) -> Tensor:
    """Per-basis decoded outputs ``o_n[T]``, ``[N, M]`` (the least-squares features)."""
    d, r, vth = p.kernels(timesteps)
    eye = torch.eye(p.n_basis, dtype=x.dtype)
    # simulate with one-hot readouts would cost N runs; instead read o_n from the spike trains
    res = simulate(x, d.to(x.dtype), r.to(x.dtype), vth.to(x.dtype), eye[0], 0.0,
                   p.input_offset.to(x.dtype), spike_fn=spike_fn, return_spikes=True)
    return torch.einsum("nt,ntm->nm", d.to(x.dtype), res.spikes)


# --------------------------------------------------------------------------------------------
# ramp initialisation: fit b + sum_n w_n clamp(x - c_n, 0, L_n) (smooth, cheap), then map to spikes
# --------------------------------------------------------------------------------------------
def _ramp_features(x: Tensor, c: Tensor, length: Tensor) -> Tensor:
    """``clamp(x - c, 0, L)`` for a batch of ramp sets: ``c, L [R, N]``, ``x [M]`` -> ``[R, M, N]``."""
    return torch.minimum(torch.relu(x[None, :, None] - c[:, None, :]), length[:, None, :])


def _batched_lstsq(a: Tensor, y: Tensor, ridge: float = 1e-10) -> Tensor:
    """Least squares for a batch ``a [R, M, K]``, ``y [M]`` via column-scaled normal equations."""
    scale = a.abs().amax(1, keepdim=True).clamp_min(1e-30)
    an = a / scale
    gram = an.transpose(1, 2) @ an
    gram = gram + ridge * torch.eye(gram.shape[-1], dtype=a.dtype) * gram.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    rhs = an.transpose(1, 2) @ y[None, :, None]
    return (torch.linalg.solve(gram, rhs)[..., 0]) / scale[:, 0, :]


def _fit_ramps(x: Tensor, y: Tensor, n_basis: int, domain, restarts: int, steps: int,
               gen: torch.Generator, fit_points: int = 2000) -> tuple[Tensor, Tensor]:
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


def _training_samples(name: str, fn: Callable, domain, rec: FitRecipe, seed: int):
    """``samples`` uniform random points of the domain (seeded) and the target there (float64)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = domain
    x = lo + (hi - lo) * torch.rand(rec.samples, generator=gen, dtype=torch.float64)
    y = fn(x).double()
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"target {name!r} is not finite everywhere on {domain}; choose a narrower domain")
    return gen, x, y


def _descend(tensors: list, surrogate_loss: Callable[[], Tensor], exact_loss: Callable[[], float],
             snapshot: Callable[[], object], rec: FitRecipe, desc: str, progress: bool):
    """Adam with exponential lr decay through the surrogate gradient; every ``ls_every`` steps (and at
    the end) ``exact_loss`` (which may re-solve the readout) is measured and the best state kept.

    Returns ``(best exact loss, snapshot of the best state, history of exact losses)``.
    """
    best = exact_loss()
    snap = snapshot()
    history = [best]
    if not tensors:
        return best, snap, history
    opt = torch.optim.Adam(tensors, lr=rec.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, rec.lr_decay)
    steps = range(rec.epochs)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc, leave=False)
    for step in steps:
        loss = surrogate_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % rec.ls_every == 0 or step == rec.epochs - 1:
            cur = exact_loss()
            history.append(cur)
            if cur < best:
                best, snap = cur, snapshot()
    return best, snap, history


# --------------------------------------------------------------------------------------------
# public fitting API
# --------------------------------------------------------------------------------------------
@torch.enable_grad()
def fit_neuron(target, domain=None, n_basis: Optional[int] = None, timesteps: int = 16, *,
               recipe: Union[str, FitRecipe] = "best", seed: int = 0, eval_points: int = 10_000,
               progress: bool = False, **overrides) -> FitResult:
    """Fit an MBE neuron to ``target`` on ``domain``.

    Args:
        target: a registered name (``"gelu"``...), a :class:`FunctionSpec`, or a callable (then
            ``domain`` is required).
        domain: ``(low, high)``; defaults to the registry's.
        n_basis: N; defaults to the registry's paper value (4 if the target is a callable).
        timesteps: T.
        recipe: ``"best"`` (default), ``"paper"`` or a :class:`FitRecipe`.
        seed: makes the fit deterministic.
        eval_points: evenly spread points for the reported MSE.
        progress: show a tqdm bar over epochs.
        **overrides: fields of the recipe to change, e.g. ``decay=False`` for the no-decay ablation.

    Returns:
        :class:`FitResult` with the ready :class:`MBENeuron` and its MSE.
    """
    name, fn, domain = _resolve_target(target, domain)
    if n_basis is None:
        n_basis = get_function(name).n_basis if isinstance(target, (str, FunctionSpec)) else 4
    validate_counts(n_basis, timesteps)
    rec = replace(get_recipe(recipe), **overrides) if overrides else get_recipe(recipe)
    t0 = time.perf_counter()
    gen, x, y = _training_samples(name, fn, domain, rec, seed)
    lo, hi = domain
    xf = x.float()

    jitter = 0.1 * torch.randn(n_basis, generator=gen, dtype=torch.float64)
    if rec.init == "ramps":
        c, span = _fit_ramps(x, y, n_basis, domain, rec.restarts, rec.ramp_steps, gen)
        levels = span / 2 if rec.decay else span / timesteps
        state = _MBEFitState(n_basis, timesteps, domain, rec, offsets=c, levels=levels,
                             out_level=levels.clone(), weight=torch.ones(n_basis, dtype=torch.float64),
                             bias=0.0, tau_jitter=torch.zeros(n_basis, dtype=torch.float64))
    else:
        alpha = float(fn(evaluation_grid(domain, 10_001, torch.float64)).double().abs().max().clamp_min(1e-6))
        offsets = torch.full((n_basis,), lo if rec.input_shift == "per_basis" else 0.0, dtype=torch.float64)
        levels = torch.full((n_basis,), alpha, dtype=torch.float64)
        state = _MBEFitState(n_basis, timesteps, domain, rec, offsets=offsets, levels=levels,
                             out_level=levels.clone(), weight=torch.full((n_basis,), 1.0 / n_basis, dtype=torch.float64),
                             bias=0.0, tau_jitter=jitter if rec.decay else torch.zeros(n_basis, dtype=torch.float64))

    surrogate = SigmoidSurrogate(rec.surrogate_slope)

    def exact_loss_and_ls() -> float:
        with torch.no_grad():
            p = state.params()
            if rec.least_squares:
                feats = _basis_outputs(p, xf, timesteps)
                w, b = _lstsq(feats, y, rec.output_bias)
                state.set_readout(w, b)
                p = state.params()
            d, r, vth = (k.float() for k in p.kernels(timesteps))
            out = simulate(xf, d, r, vth, p.weight.float(), float(p.bias), p.input_offset.float()).output
            return float(((out.double() - y) ** 2).mean())

    def surrogate_loss() -> Tensor:
        p = state.params()
        d, r, vth = (k.float() for k in p.kernels(timesteps))
        out = simulate(xf, d, r, vth, p.weight.float(), p.bias.float(), p.input_offset.float(),
                       spike_fn=surrogate).output
        return ((out.double() - y) ** 2).mean()

    best_loss, best_snap, history = _descend(state.tensors(), surrogate_loss, exact_loss_and_ls, state.snapshot,
                                             rec, f"fit {name} N={n_basis} T={timesteps}", progress)
    state.restore(best_snap)
    params = MBEParameters(**{k: v.detach().float() for k, v in vars(state.params()).items()})
    neuron = MBENeuron(params, timesteps, function=name, domain=domain)
    mse = neuron_mse(neuron, fn, domain, eval_points)
    return FitResult(neuron, mse, best_loss, time.perf_counter() - t0, rec, seed, history)


@torch.enable_grad()
def fit_fs_neuron(target, domain=None, timesteps: int = 16, *, init: str = "binary",
                  recipe: Union[str, FitRecipe] = "best", seed: int = 0, shift: bool = False,
                  eval_points: int = 10_000, **overrides) -> FitResult:
    """Fit the Few-Spikes baseline (3T free values) with the same loss, optimiser and budget.

    ``init``: ``"binary"`` (halving, the good one) or ``"random"``. The membrane starts at ``x``
    (no shift) unless ``shift=True``, which starts it at ``x - low`` so signed inputs can be encoded
    (what an FS identity encoder needs). Under the ``best`` recipe ``d`` (the FS readout) and an output bias are solved by
    least squares between gradient steps; under ``paper`` only gradients are used and there is no bias.
    """
    name, fn, domain = _resolve_target(target, domain)
    validate_counts(1, timesteps)
    if init not in ("binary", "random"):
        raise ValueError(f"init must be 'binary' or 'random', got {init!r}")
    rec = replace(get_recipe(recipe), **overrides) if overrides else get_recipe(recipe)
    t0 = time.perf_counter()
    gen, x, y = _training_samples(name, fn, domain, rec, seed)
    lo, hi = domain
    xf = x.float()
    # u[0] = x as in Stoeckl & Maass: the sign cut-off (a negative membrane never fires) is where FS
    # gets its ReLU-like shape; shifting the input into range would leave it a linear code of x.
    offset = lo if shift else 0.0
    in_range = (hi - lo) if shift else max(abs(lo), abs(hi))
    out_range = float(y.abs().max())
    make = FSParameters.binary if init == "binary" else FSParameters.random
    kw = {"generator": gen} if init == "random" else {}
    p0 = make(timesteps, in_range, out_range, input_offset=offset, **kw)
    raw = {k: getattr(p0, k).double().clone().requires_grad_(True) for k in ("d", "r", "vth")}
    bias = torch.tensor(0.0, dtype=torch.float64)
    if rec.output_bias and not rec.least_squares:
        bias.requires_grad_(True)
    if rec.least_squares:
        raw["d"].requires_grad_(False)
    surrogate = SigmoidSurrogate(rec.surrogate_slope)
    one = torch.ones(1, dtype=torch.float32)
    off = torch.tensor([offset], dtype=torch.float32)

    def exact() -> float:
        with torch.no_grad():
            if rec.least_squares:
                res = simulate(xf, raw["d"][None].float(), raw["r"][None].float(), raw["vth"][None].float(),
                               one, 0.0, off, return_spikes=True)
                w, b = _lstsq(res.spikes[0], y, rec.output_bias)
                raw["d"].copy_(w)
                bias.copy_(b)
            out = simulate(xf, raw["d"][None].float(), raw["r"][None].float(), raw["vth"][None].float(),
                           one, float(bias), off).output
            return float(((out.double() - y) ** 2).mean())

    def surrogate_loss() -> Tensor:
        out = simulate(xf, raw["d"][None].float(), raw["r"][None].float(), raw["vth"][None].float(),
                       one, bias.float(), off, spike_fn=surrogate).output
        return ((out.double() - y) ** 2).mean()

    def snapshot():
        return {k: v.detach().clone() for k, v in raw.items()}, bias.detach().clone()

    tensors = [v for v in (*raw.values(), bias) if v.requires_grad]
    best, snap, history = _descend(tensors, surrogate_loss, exact, snapshot, rec, f"fit FS {name} T={timesteps}",
                                   False)
    vals, b = snap
    params = FSParameters(d=vals["d"].float(), r=vals["r"].float(), vth=vals["vth"].float(),
                          bias=b.float(), input_offset=torch.tensor(float(offset)))
    neuron = FSNeuron(params, function=name, domain=domain)
    mse = neuron_mse(neuron, fn, domain, eval_points)
    return FitResult(neuron, mse, best, time.perf_counter() - t0, rec, seed, history)
