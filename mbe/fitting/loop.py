"""The optimiser loop shared by every fit: Adam through the surrogate gradient, an exact (Heaviside)
loss measured every ``ls_every`` steps with the readout re-solved by least squares, best state kept."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..neuron.functional import heaviside, simulate
from ..neuron.mbe import MBEParameters
from .recipes import FitRecipe


def lstsq_readout(features: Tensor, y: Tensor, bias: bool) -> tuple[Tensor, Tensor]:
    """Least-squares readout in float64: ``y ~ features.T @ w (+ b)``; features ``[K, M]``."""
    a = features.double().T
    if bias:
        a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1)
    scale = a.abs().amax(0).clamp_min(1e-30)
    sol = torch.linalg.lstsq(a / scale, y.double()[:, None], driver="gelsd").solution[:, 0] / scale
    if bias:
        return sol[:-1], sol[-1]
    return sol, torch.zeros((), dtype=torch.float64)


def basis_outputs(p: MBEParameters, x: Tensor, timesteps: int, spike_fn=heaviside) -> Tensor:
    """Per-basis decoded outputs ``o_n[T]``, ``[N, M]`` (the least-squares features)."""
    d, r, vth = p.kernels(timesteps)
    eye = torch.eye(p.n_basis, dtype=x.dtype)
    # simulate with one-hot readouts would cost N runs; instead read o_n from the spike trains
    res = simulate(
        x,
        d.to(x.dtype),
        r.to(x.dtype),
        vth.to(x.dtype),
        eye[0],
        0.0,
        p.input_offset.to(x.dtype),
        spike_fn=spike_fn,
        return_spikes=True,
    )
    return torch.einsum("nt,ntm->nm", d.to(x.dtype), res.spikes)


def descend(
    tensors: list,
    surrogate_loss: Callable[[], Tensor],
    exact_loss: Callable[[], float],
    snapshot: Callable[[], object],
    rec: FitRecipe,
    desc: str,
    progress: bool,
):
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
