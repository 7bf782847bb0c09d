"""Operator-error experiments behind ``notebooks/02_operators.ipynb``.

Inputs are **synthesised** with statistics chosen to resemble a ViT-B/BERT-base layer (no model is
recorded yet; the conversion work will replace these with recorded activations):

- attention: Q, K, V ``[heads, L, 64]`` with unit-variance entries, so logits ``Q K^T / 8`` have
  standard deviation about 1, plus a few strongly attended keys (logit +6), as in trained heads;
- LayerNorm/RMSNorm input: ``[L, 768]`` hidden states, per-token scale drawn log-normally, with two
  outlier channels at 20x (the well-known massive-activation channels);
- activations: GELU/SiLU inputs ``N(-0.5, 1.5^2)`` with 0.1 % outliers at +-8.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import pandas as pd
import torch

from .. import ops
from ..fitting import fit_fs_neuron

SYNTHETIC_NOTE = "synthesised inputs with ViT-B/BERT-base-like statistics (see mbe.experiments.operators)"


def synthetic_inputs(
    seq: int = 197, heads: int = 12, head_dim: int = 64, hidden: int = 768, mlp: int = 3072, seed: int = 0
) -> dict:
    """Reproducible synthetic activations (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(heads, seq, head_dim, generator=g)
    k = torch.randn(heads, seq, head_dim, generator=g)
    v = torch.randn(heads, seq, head_dim, generator=g)
    logits = q @ k.transpose(-1, -2) / head_dim**0.5
    hot = torch.randint(0, seq, (heads, 3), generator=g)
    logits.scatter_add_(-1, hot[:, None, :].expand(heads, seq, 3), torch.full((heads, seq, 3), 6.0))
    scale = torch.exp(0.5 * torch.randn(seq, 1, generator=g))
    hidden_states = torch.randn(seq, hidden, generator=g) * scale + 0.1
    hidden_states[:, :2] *= 20
    act = torch.randn(seq, mlp, generator=g) * 1.5 - 0.5
    out_idx = torch.rand(seq, mlp, generator=g) < 1e-3
    act[out_idx] = 8.0 * torch.sign(torch.randn(int(out_idx.sum()), generator=g))
    probs = torch.softmax(logits, -1)
    return {
        "q": q,
        "k": k,
        "v": v,
        "logits": logits,
        "probs": probs,
        "hidden": hidden_states,
        "act": act,
        "ln_weight": 1 + 0.1 * torch.randn(hidden, generator=g),
        "ln_bias": 0.1 * torch.randn(hidden, generator=g),
    }


def operator_cases(x: dict) -> dict[str, tuple[Callable, Callable]]:
    """name -> (spiking op taking ``**kw``, exact torch reference)."""
    kt = x["k"].transpose(-1, -2)
    return {
        "QK^T (matmul)": (lambda **kw: ops.spiking_matmul(x["q"], kt, **kw), lambda: x["q"] @ kt),
        "attn V (matmul)": (lambda **kw: ops.spiking_matmul(x["probs"], x["v"], **kw), lambda: x["probs"] @ x["v"]),
        "softmax": (lambda **kw: ops.spiking_softmax(x["logits"], **kw), lambda: torch.softmax(x["logits"], -1)),
        "softmax (causal)": (
            lambda **kw: ops.spiking_softmax(x["logits"], causal=True, **kw),
            lambda: torch.softmax(
                x["logits"].masked_fill(torch.ones_like(x["logits"], dtype=torch.bool)[0].triu(1), float("-inf")), -1
            ),
        ),
        "layer_norm": (
            lambda **kw: ops.spiking_layer_norm(
                x["hidden"], x["hidden"].shape[-1], x["ln_weight"], x["ln_bias"], 1e-6, **kw
            ),
            lambda: torch.nn.functional.layer_norm(
                x["hidden"], (x["hidden"].shape[-1],), x["ln_weight"], x["ln_bias"], 1e-6
            ),
        ),
        "rms_norm": (
            lambda **kw: ops.spiking_rms_norm(x["hidden"], x["ln_weight"], 1e-6, **kw),
            lambda: x["hidden"] * torch.rsqrt(x["hidden"].pow(2).mean(-1, keepdim=True) + 1e-6) * x["ln_weight"],
        ),
        "gelu": (
            lambda **kw: ops.spiking_activation("gelu", x["act"], **_act(kw)),
            lambda: torch.nn.functional.gelu(x["act"]),
        ),
        "silu": (
            lambda **kw: ops.spiking_activation("silu", x["act"], **_act(kw)),
            lambda: torch.nn.functional.silu(x["act"]),
        ),
        "product (elementwise)": (
            lambda **kw: ops.spiking_mul(x["act"], x["act"].flip(0), **kw),
            lambda: x["act"] * x["act"].flip(0),
        ),
    }


def _act(kw: dict) -> dict:
    return {k: v for k, v in kw.items() if k in ("timesteps", "mode", "stats", "neurons")}


def error_row(out: torch.Tensor, ref: torch.Tensor) -> dict:
    err = (out.double() - ref.double()).abs()
    scale = float(ref.abs().max())
    return {
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "max_rel_scale": float(err.max()) / scale,
        "mean_rel": float(err.mean()) / float(ref.abs().mean()),
    }


def fs_neuron_set(timesteps: int, seed: int = 0, **fit_overrides) -> dict:
    """FS neurons (binary init, best FS recipe) for every function the operators use; the identity
    encoder's membrane starts at ``x + 1`` so it can encode signed operands."""
    names = ("identity", "exp2", "reciprocal", "rsqrt", "gelu", "silu")
    return {
        n: fit_fs_neuron(n, timesteps=timesteps, seed=seed, shift=(n == "identity"), **fit_overrides).neuron
        for n in names
    }


def operator_errors(
    timesteps: Sequence[int] = (8, 10, 12, 16),
    neuron_kinds: Sequence[str] = ("MBE", "FS"),
    inputs: dict | None = None,
    refine: int = 1,
    progress: bool = True,
    fs_fit: dict | None = None,
) -> pd.DataFrame:
    """Error of every operator against its exact op, by T and neuron kind (MBE shipped tables at the
    paper's N, or FS neurons fitted now)."""
    x = inputs or synthetic_inputs()
    cases = operator_cases(x)
    refs = {name: ref() for name, (_, ref) in cases.items()}
    jobs = [(kind, t) for kind in neuron_kinds for t in timesteps]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="operator errors")
    rows = []
    for kind, t in jobs:
        neurons = fs_neuron_set(t, **(fs_fit or {})) if kind == "FS" else None
        for name, (op, _) in cases.items():
            kw = {"timesteps": t, "neurons": neurons}
            if name.startswith(("softmax", "layer_norm", "rms_norm")):
                kw["refine"] = refine
            stats = ops.OpStats()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # clamping is reported in the 'clamped' column instead
                out = op(stats=stats, **kw)
            rows.append(
                {
                    "operator": name,
                    "neuron": kind,
                    "timesteps": t,
                    **error_row(out, refs[name]),
                    "spikes": stats.total("spikes"),
                    "sops": stats.total("sops"),
                    "clamped": stats.total("clamped"),
                    "inputs": SYNTHETIC_NOTE,
                }
            )
    return pd.DataFrame(rows)


def softmax_row_sums(timesteps: Sequence[int] = (8, 10, 12, 16), inputs: dict | None = None) -> pd.DataFrame:
    """Max |row sum - 1| of the spiking softmax, with and without the Newton refinement."""
    x = inputs or synthetic_inputs()
    rows = []
    for t in timesteps:
        for refine in (0, 1):
            p = ops.spiking_softmax(x["logits"], timesteps=t, refine=refine)
            rows.append(
                {
                    "timesteps": t,
                    "refine": refine,
                    "max_row_sum_error": float((p.sum(-1) - 1).abs().max()),
                    "max_abs_vs_torch": float((p - x["probs"]).abs().max()),
                }
            )
    return pd.DataFrame(rows)


def event_vs_fused(timesteps: int = 16, inputs: dict | None = None, budget_mb: float = 64.0) -> pd.DataFrame:
    """Both execution modes on the same inputs: max |difference| relative to the output scale, spike-pair
    SOPs counted by each, and wall time."""
    import time

    x = inputs or synthetic_inputs()
    rows = []
    for name, (op, ref) in operator_cases(x).items():
        res = {}
        for mode in ("fused", "event"):
            stats = ops.OpStats()
            kw = {"timesteps": timesteps, "mode": mode, "stats": stats}
            if not name.startswith(("gelu", "silu")):
                kw["budget_mb"] = budget_mb
            start = time.perf_counter()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = op(**kw)
            res[mode] = (out, time.perf_counter() - start, stats.total("sops"))
        scale = float(ref().abs().max())
        rows.append(
            {
                "operator": name,
                "timesteps": timesteps,
                "max_diff_over_scale": float((res["fused"][0] - res["event"][0]).abs().max()) / scale,
                "sops_fused": res["fused"][2],
                "sops_event": res["event"][2],
                "fused_seconds": res["fused"][1],
                "event_seconds": res["event"][1],
                "event_budget_mb": budget_mb,
            }
        )
    return pd.DataFrame(rows)


def layer_spike_stats(timesteps: int = 16, inputs: dict | None = None) -> pd.DataFrame:
    """Firing rates and SOPs per site for one synthetic ViT-like layer's nonlinear parts."""
    x = inputs or synthetic_inputs()
    stats = ops.OpStats()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (op, _) in operator_cases(x).items():
            if name in ("softmax (causal)", "rms_norm", "silu", "product (elementwise)"):
                continue
            op(timesteps=timesteps, stats=stats)
    return stats.as_frame()


def norm_row_scaling(timesteps: Sequence[int] = (8, 10, 12, 16), inputs: dict | None = None) -> pd.DataFrame:
    """LayerNorm error with one encoding range per site (the paper) against per-row power-of-two scaling."""
    x = inputs or synthetic_inputs()
    h, w, b = x["hidden"], x["ln_weight"], x["ln_bias"]
    ref = torch.nn.functional.layer_norm(h, (h.shape[-1],), w, b, 1e-6)
    rows = []
    for t in timesteps:
        for row_scaling in (False, True):
            out = ops.spiking_layer_norm(h, h.shape[-1], w, b, 1e-6, timesteps=t, row_scaling=row_scaling)
            rows.append({"timesteps": t, "row_scaling": row_scaling, **error_row(out, ref)})
    return pd.DataFrame(rows)
