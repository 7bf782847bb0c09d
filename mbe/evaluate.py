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
        agreement in percent; KL(ANN || SNN) of the softmax outputs, mean per sample, in nats).
    """
    n = correct_a = correct_s = agree = 0
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
        agree += int((pa == ps).sum())
        mse += float(((la - ls) ** 2).mean(-1).sum())
        kl += float(
            torch.nn.functional.kl_div(ls.log_softmax(-1), la.log_softmax(-1), log_target=True, reduction="sum")
        )
    if n == 0:
        raise ValueError("compare_classifiers: no samples in batches")
    return {
        "samples": n,
        "ann_accuracy": 100 * correct_a / n,
        "snn_accuracy": 100 * correct_s / n,
        "agreement": 100 * agree / n,
        "logit_mse": mse / n,
        "kl": kl / n,
    }


@torch.no_grad()
def compare_language_models(
    ann: nn.Module, snn: nn.Module, token_ids: Tensor, context: int = 256, stride: int = 128, progress: bool = True
) -> dict:
    """Sliding-window perplexity of both causal LMs on one token stream, plus their agreement.

    Each window of up to ``context`` tokens starts ``stride`` after the previous one; only the tokens
    not scored by an earlier window count. Returns ``{"tokens", "ann_ppl", "snn_ppl", "ppl_increase_pct",
    "agreement", "kl"}`` (agreement: percent of positions with the same top-1 next token; KL(ANN || SNN)
    per scored token, nats).
    """
    ids = token_ids.reshape(-1)
    if ids.numel() < 2:
        raise ValueError("compare_language_models: need at least 2 tokens")
    nll_a = nll_s = kl = 0.0
    agree = scored = 0
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
        nll_a -= float(lpa.gather(-1, targets[:, None]).sum())
        nll_s -= float(lps.gather(-1, targets[:, None]).sum())
        kl += float(torch.nn.functional.kl_div(lps, lpa, log_target=True, reduction="sum"))
        agree += int((lpa.argmax(-1) == lps.argmax(-1)).sum())
        scored += pos.numel()
        prev_end = end
        if end == ids.numel():
            break
    ppl_a, ppl_s = math.exp(nll_a / scored), math.exp(nll_s / scored)
    return {
        "tokens": scored,
        "context": context,
        "stride": stride,
        "ann_ppl": ppl_a,
        "snn_ppl": ppl_s,
        "ppl_increase_pct": 100 * (ppl_s / ppl_a - 1),
        "agreement": 100 * agree / scored,
        "kl": kl / scored,
    }
