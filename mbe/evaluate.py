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


@torch.no_grad()
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
        ``delta_ci_low``/``delta_ci_high`` for the paired accuracy change in points.
    """
    n = correct_a = correct_s = agree = gained = lost = 0
    mse = kl = 0.0
    for batch in _bar(batches, "evaluating", progress):
        batch = dict(batch)
        if label_key not in batch:
            raise ValueError(f"batch lacks the label key {label_key!r}; its keys are {sorted(batch)}")
        labels = batch.pop(label_key)
        la, ls = _logits(ann, batch), _logits(snn, batch)
        pa, ps = la.argmax(-1), ls.argmax(-1)
        n += labels.numel()
        correct_a += int((pa == labels).sum())
        correct_s += int((ps == labels).sum())
        gained += int(((ps == labels) & (pa != labels)).sum())
        lost += int(((pa == labels) & (ps != labels)).sum())
        agree += int((pa == ps).sum())
        mse += float(((la - ls) ** 2).mean(-1).sum())
        kl += float(
            torch.nn.functional.kl_div(ls.log_softmax(-1), la.log_softmax(-1), log_target=True, reduction="sum")
        )
    if n == 0:
        raise ValueError("compare_classifiers: no samples in batches")
    out = {
        "samples": n,
        "ann_accuracy": 100 * correct_a / n,
        "snn_accuracy": 100 * correct_s / n,
        "agreement": 100 * agree / n,
        "logit_mse": mse / n,
        "kl": kl / n,
    }
    for name, hits in (("ann_accuracy", correct_a), ("snn_accuracy", correct_s), ("agreement", agree)):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = wilson_interval(hits, n)
    out["delta_ci_low"], out["delta_ci_high"] = paired_delta_interval(gained, lost, n)
    return out


@torch.no_grad()
def compare_language_models(
    ann: nn.Module, snn: nn.Module, token_ids: Tensor, context: int = 256, stride: int = 128, progress: bool = True
) -> dict:
    r"""Sliding-window perplexity of both causal LMs on one token stream, plus their agreement.

    Each window of up to ``context`` tokens starts ``stride`` after the previous one; only the tokens
    not scored by an earlier window count. Returns ``{"tokens", "ann_ppl", "snn_ppl", "ppl_increase_pct",
    "agreement", "kl"}`` (agreement: percent of positions with the same top-1 next token; KL(ANN || SNN)
    per scored token, nats) with 95% intervals: ``agreement_ci_low``/``_high`` (Wilson) and
    ``ppl_increase_ci_low``/``_high`` from the paired per-token NLL change :math:`d_i`,
    :math:`100\,(e^{\bar d \pm 1.96\, s_d/\sqrt{n}} - 1)` (tokens treated as independent, so the interval
    is somewhat narrow for correlated text).
    """
    ids = token_ids.reshape(-1)
    if ids.numel() < 2:
        raise ValueError("compare_language_models: need at least 2 tokens")
    kl = 0.0
    agree = scored = 0
    token_nll_a, token_nll_s = [], []
    prev_end = 0
    windows = list(range(0, ids.numel() - 1, stride))
    for begin in _bar(windows, "perplexity", progress):
        end = min(begin + context, ids.numel())
        window = ids[begin:end][None]
        first_new = max(prev_end, begin + 1)  # first target position not scored yet
        la, ls = _logits(ann, {"input_ids": window})[0], _logits(snn, {"input_ids": window})[0]
        pos = torch.arange(first_new - begin - 1, end - begin - 1)  # predicting tokens first_new..end-1
        targets = window[0, pos + 1]
        lpa, lps = la[pos].log_softmax(-1), ls[pos].log_softmax(-1)
        token_nll_a.append(-lpa.gather(-1, targets[:, None])[:, 0].double())
        token_nll_s.append(-lps.gather(-1, targets[:, None])[:, 0].double())
        kl += float(torch.nn.functional.kl_div(lps, lpa, log_target=True, reduction="sum"))
        agree += int((lpa.argmax(-1) == lps.argmax(-1)).sum())
        scored += pos.numel()
        prev_end = end
        if end == ids.numel():
            break
    nll_a, nll_s = torch.cat(token_nll_a), torch.cat(token_nll_s)
    ppl_a, ppl_s = math.exp(float(nll_a.mean())), math.exp(float(nll_s.mean()))
    change = nll_s - nll_a  # per token; its mean is log(ppl_s / ppl_a)
    mean = float(change.mean())
    half = 1.96 * float(change.std()) / math.sqrt(scored) if scored > 1 else math.inf
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
        "kl": kl / scored,
    }
