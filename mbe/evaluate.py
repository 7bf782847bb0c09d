"""Evaluation helpers: accuracy for classifiers, sliding-window perplexity for causal LMs, and agreement
between an ANN and its spiking twin (prediction agreement, logit MSE, KL divergence), with sample counts."""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Optional

import torch
from torch import Tensor, nn


def _bar(items, desc: str, progress: bool, total: Optional[int] = None):
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    r"""The Wilson score interval of a proportion ``hits / n`` (95% for ``z=1.96``), in percent:

    .. math:: \frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}
    """
    if n <= 0:
        raise ValueError(f"wilson_interval: n must be positive, got {n}")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def paired_delta_interval(gained: int, lost: int, n: int, z: float = 1.96) -> tuple[float, float]:
    r"""The normal interval of a paired accuracy difference :math:`\Delta = (g - l)/n` in points, from the
    samples the SNN gets right and the ANN wrong (``gained``) and the reverse (``lost``):
    :math:`\mathrm{Var}\,\Delta = (g + l - (g - l)^2/n)/n^2`."""
    if n <= 0:
        raise ValueError(f"paired_delta_interval: n must be positive, got {n}")
    delta = (gained - lost) / n
    half = z * math.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n
    return 100 * (delta - half), 100 * (delta + half)


def _logits(model: nn.Module, batch: dict) -> Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # saturation is counted in the conversion report
        return model(**batch).logits.float()


def _to(batch: dict, device) -> dict:
    if device is None:
        return batch
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _check_shard(shard) -> tuple[int, int]:
    rank, world = shard
    if not (isinstance(rank, int) and isinstance(world, int) and 0 <= rank < world):
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard!r}")
    return rank, world


@torch.no_grad()
def classifier_records(
    ann: nn.Module,
    snn: nn.Module,
    batches: Iterable[dict],
    label_key: str = "labels",
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    device=None,
) -> dict[str, Tensor]:
    """Per-sample results of both classifiers on labelled batches (this process's share of them).

    With ``shard=(rank, world)`` only batches ``i`` with ``i % world == rank`` run; samples keep their global
    index, so the shards of every rank, concatenated and sorted by ``index`` (:func:`mbe.distributed.gather_records`),
    equal the records of one process. Returns ``[n]`` tensors: ``index``, ``label``, ``ann_pred``, ``snn_pred``
    (int64), ``sq_error`` (the mean squared logit difference of the sample) and ``kl`` (KL(ANN || SNN) of its
    softmax outputs, nats) (float64).
    """
    rank, world = _check_shard(shard)
    batches = list(batches)
    out: dict[str, list] = {k: [] for k in ("index", "label", "ann_pred", "snn_pred", "sq_error", "kl")}
    offset = 0
    mine = {i for i in range(len(batches)) if i % world == rank}
    bar = _bar(range(len(batches)), "evaluating", progress)
    for i in bar:
        batch = dict(batches[i])
        if label_key not in batch:
            raise ValueError(f"batch lacks the label key {label_key!r}; its keys are {sorted(batch)}")
        labels = batch.pop(label_key).reshape(-1)
        n = labels.numel()
        if i in mine:
            batch = _to(batch, device)
            la, ls = _logits(ann, batch).cpu(), _logits(snn, batch).cpu()
            out["index"].append(torch.arange(offset, offset + n))
            out["label"].append(labels.long().cpu())
            out["ann_pred"].append(la.argmax(-1))
            out["snn_pred"].append(ls.argmax(-1))
            out["sq_error"].append(((la - ls) ** 2).mean(-1).double())
            kl = torch.nn.functional.kl_div(ls.log_softmax(-1), la.log_softmax(-1), log_target=True, reduction="none")
            out["kl"].append(kl.sum(-1).double())
        offset += n
    empty = {"sq_error": torch.float64, "kl": torch.float64}
    return {k: torch.cat(v) if v else torch.zeros(0, dtype=empty.get(k, torch.int64)) for k, v in out.items()}


def summarize_classifiers(records: dict[str, Tensor]) -> dict:
    """The summary :func:`compare_classifiers` returns, from per-sample :func:`classifier_records` (all of them,
    in index order)."""
    n = int(records["index"].numel())
    if n == 0:
        raise ValueError("compare_classifiers: no samples in batches")
    labels, pa, ps = records["label"], records["ann_pred"], records["snn_pred"]
    correct_a, correct_s = int((pa == labels).sum()), int((ps == labels).sum())
    gained = int(((ps == labels) & (pa != labels)).sum())
    lost = int(((pa == labels) & (ps != labels)).sum())
    agree = int((pa == ps).sum())
    out = {
        "samples": n,
        "ann_accuracy": 100 * correct_a / n,
        "snn_accuracy": 100 * correct_s / n,
        "agreement": 100 * agree / n,
        "logit_mse": float(records["sq_error"].sum()) / n,
        "kl": float(records["kl"].sum()) / n,
    }
    for name, hits in (("ann_accuracy", correct_a), ("snn_accuracy", correct_s), ("agreement", agree)):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = wilson_interval(hits, n)
    out["delta_ci_low"], out["delta_ci_high"] = paired_delta_interval(gained, lost, n)
    return out


def compare_classifiers(
    ann: nn.Module, snn: nn.Module, batches: Iterable[dict], label_key: str = "labels", progress: bool = True
) -> dict:
    """Top-1 accuracy of both models on labelled batches, plus their agreement.

    Args:
        batches: dicts of forward kwargs plus ``label_key`` (a ``[B]`` tensor of class indices).
    Returns:
        ``{"samples", "ann_accuracy", "snn_accuracy", "agreement", "logit_mse", "kl"}`` (accuracies and
        agreement in percent; KL(ANN || SNN) of the softmax outputs, mean per sample, in nats), with 95%
        intervals: ``*_ci_low``/``*_ci_high`` for both accuracies and the agreement (Wilson), and
        ``delta_ci_low``/``delta_ci_high`` for the paired accuracy change in points. Sharded over processes:
        :func:`mbe.distributed.evaluate_sharded`.
    """
    return summarize_classifiers(classifier_records(ann, snn, batches, label_key, progress))


def lm_windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """The sliding windows over a stream of ``n_tokens``: ``(begin, end, first_new)``, each window
    ``[begin, end)`` of at most ``context`` tokens starting ``stride`` after the previous one, scoring the
    targets ``first_new .. end-1`` that no earlier window scored."""
    if n_tokens < 2:
        raise ValueError("compare_language_models: need at least 2 tokens")
    for name, v in (("context", context), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"compare_language_models: {name} must be a positive integer, got {v!r}")
    if context < 2:
        raise ValueError(f"compare_language_models: context must be at least 2 tokens, got {context}")
    out, prev_end = [], 0
    for begin in range(0, n_tokens - 1, stride):
        end = min(begin + context, n_tokens)
        out.append((begin, end, max(prev_end, begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
    return out


@torch.no_grad()
def language_model_records(
    ann: nn.Module,
    snn: nn.Module,
    token_ids: Tensor,
    context: int = 256,
    stride: int = 128,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    device=None,
) -> dict[str, Tensor]:
    """Per-token results of both causal LMs on one token stream (this process's share of the windows,
    :func:`lm_windows`; window ``i`` runs where ``i % world == rank``).

    Returns ``[n]`` tensors over the scored targets: ``position`` (the target's index in the stream, int64),
    ``ann_nll``, ``snn_nll`` (negative log-likelihoods, float64), ``agree`` (same top-1 next token, bool) and
    ``kl`` (KL(ANN || SNN) of the next-token distributions, float64).
    """
    rank, world = _check_shard(shard)
    ids = token_ids.reshape(-1)
    windows = lm_windows(ids.numel(), context, stride)
    out: dict[str, list] = {k: [] for k in ("position", "ann_nll", "snn_nll", "agree", "kl")}
    mine = [w for i, w in enumerate(windows) if i % world == rank]
    for begin, end, first_new in _bar(mine, "perplexity", progress):
        window = ids[begin:end][None]
        batch = _to({"input_ids": window}, device)
        la, ls = _logits(ann, batch)[0].cpu(), _logits(snn, batch)[0].cpu()
        pos = torch.arange(first_new - begin - 1, end - begin - 1)  # predicting tokens first_new..end-1
        targets = window[0, pos + 1]
        lpa, lps = la[pos].log_softmax(-1), ls[pos].log_softmax(-1)
        out["position"].append(pos + begin + 1)
        out["ann_nll"].append(-lpa.gather(-1, targets[:, None])[:, 0].double())
        out["snn_nll"].append(-lps.gather(-1, targets[:, None])[:, 0].double())
        out["agree"].append(lpa.argmax(-1) == lps.argmax(-1))
        kl = torch.nn.functional.kl_div(lps, lpa, log_target=True, reduction="none")
        out["kl"].append(kl.sum(-1).double())
    types = {"position": torch.int64, "agree": torch.bool}
    return {k: torch.cat(v) if v else torch.zeros(0, dtype=types.get(k, torch.float64)) for k, v in out.items()}


def summarize_language_models(records: dict[str, Tensor], context: int, stride: int) -> dict:
    """The summary :func:`compare_language_models` returns, from per-token :func:`language_model_records`
    (all of them, in position order)."""
    scored = int(records["position"].numel())
    if scored == 0:
        raise ValueError("compare_language_models: no tokens scored")
    nll_a, nll_s = records["ann_nll"], records["snn_nll"]
    ppl_a, ppl_s = math.exp(float(nll_a.mean())), math.exp(float(nll_s.mean()))
    change = nll_s - nll_a  # per token; its mean is log(ppl_s / ppl_a)
    mean = float(change.mean())
    half = 1.96 * float(change.std()) / math.sqrt(scored) if scored > 1 else math.inf
    agree = int(records["agree"].sum())
    agreement_ci = wilson_interval(agree, scored)
    return {
        "tokens": scored,
        "context": context,
        "stride": stride,
        "ann_ppl": ppl_a,
        "snn_ppl": ppl_s,
        "ppl_increase_pct": 100 * (ppl_s / ppl_a - 1),
        "ppl_increase_ci_low": 100 * (math.exp(mean - half) - 1),
        "ppl_increase_ci_high": 100 * (math.exp(mean + half) - 1),
        "agreement": 100 * agree / scored,
        "agreement_ci_low": agreement_ci[0],
        "agreement_ci_high": agreement_ci[1],
        "kl": float(records["kl"].sum()) / scored,
    }


def compare_language_models(
    ann: nn.Module, snn: nn.Module, token_ids: Tensor, context: int = 256, stride: int = 128, progress: bool = True
) -> dict:
    r"""Sliding-window perplexity of both causal LMs on one token stream, plus their agreement.

    Each window of up to ``context`` tokens starts ``stride`` after the previous one; only the tokens
    not scored by an earlier window count (:func:`lm_windows`). Returns ``{"tokens", "ann_ppl", "snn_ppl",
    "ppl_increase_pct", "agreement", "kl"}`` (agreement: percent of positions with the same top-1 next token;
    KL(ANN || SNN) per scored token, nats) with 95% intervals: ``agreement_ci_low``/``_high`` (Wilson) and
    ``ppl_increase_ci_low``/``_high`` from the paired per-token NLL change :math:`d_i`,
    :math:`100\,(e^{\bar d \pm 1.96\, s_d/\sqrt{n}} - 1)` (tokens treated as independent, so the interval
    is somewhat narrow for correlated text). Sharded over processes: :func:`mbe.distributed.evaluate_sharded`.
    """
    records = language_model_records(ann, snn, token_ids, context, stride, progress)
    return summarize_language_models(records, context, stride)
