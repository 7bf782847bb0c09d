"""The embedded NLG model: a small GPT-2 trained from scratch on the Python documentation.

- Evaluation text: ``pydoc_data.topics``, the language reference as prose (79 topics, about 465k
  characters; part of every CPython install, PSF licence), in a seeded order, joined with ``</s>``. It is
  always at hand, so evaluating the shipped model needs nothing beyond the package. Calibration windows
  come from the end of this stream, evaluation from its start (the two do not meet for evaluations under
  about 100k tokens).
- Training text: the rest of the Python documentation, the reST sources in Debian's ``python3.11-doc``
  package (``apt-get install python3.11-doc``; only needed to retrain), without ``reference/`` (where the
  topics come from) and without any paragraph that shares a run of 12 words with the evaluation text
  (``library/stdtypes`` and others repeat reference passages), so the evaluation text is truly held out.

Training samples random windows of ``context`` tokens from the training stream (seeded), AdamW with a
linear warm-up and cosine decay, for a fixed number of steps. ``python -m mbe zoo train gpt2-pydocs``
reproduces the shipped weights and tokenizer (the texts depend on the Python minor version; the recipe
records the one used).
"""

from __future__ import annotations

import math
import platform
import re
import time
from pathlib import Path

import torch

from .storage import WEIGHTS_DIR, ZooError, load_tensors, read_info, save_tensors
from .text import load_bpe, train_bpe

NAME = "gpt2-pydocs"
RECIPE = {
    "config": {
        "n_positions": 128,
        "n_embd": 192,
        "n_layer": 4,
        "n_head": 4,
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
    },
    "vocab_size": 4096,
    "context": 128,
    "batch_size": 16,
    "steps": 2000,
    "lr": 2e-3,
    "warmup": 100,
    "weight_decay": 0.1,
    "seed": 0,
    "python": "3.11",
    "train_text": "python3.11-doc reST sources minus reference/ and paragraphs sharing 12 words with the topics",
    "eval_text": "pydoc_data.topics, seeded order",
}
DOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
SHINGLE_WORDS = 12


def load_topics() -> list[str]:
    """The evaluation texts: every ``pydoc_data.topics`` topic, in a seeded order."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions strip it
        raise ZooError(
            "the NLG zoo model needs pydoc_data (part of CPython's standard library); "
            "this Python was installed without it"
        ) from exc
    keys = sorted(topics)
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(RECIPE["seed"])).tolist()
    return [topics[keys[i]].strip() for i in order]


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def load_training_docs(docs_dir: Path = DOCS_DIR) -> list[str]:
    """The training texts (see the module docstring); needs Debian's python3.11-doc."""
    files = (
        sorted(p for p in docs_dir.rglob("*.rst.txt") if "reference" not in p.relative_to(docs_dir).parts)
        if docs_dir.is_dir()
        else []
    )
    if not files:
        raise ZooError(
            f"retraining {NAME} needs the Python docs' reST sources in {docs_dir}: "
            "apt-get install python3.11-doc (evaluating the shipped model does not)"
        )
    held_out = set().union(*(_shingles(t) for t in load_topics()))
    docs = []
    for path in files:
        kept = [
            p
            for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n")
            if p.strip() and not _shingles(p) & held_out
        ]
        if kept:
            docs.append("\n\n".join(kept).strip())
    return docs


def _tokenizer_path(directory: Path) -> Path:
    return directory / f"{NAME}.tokenizer.json"


def tokenizer(directory: Path = WEIGHTS_DIR):
    return load_bpe(_tokenizer_path(directory))


def token_stream(texts: list[str], tok) -> torch.Tensor:
    """One 1-D LongTensor: every text's tokens followed by ``</s>``."""
    ids: list[int] = []
    for t in texts:
        ids += tok(t)["input_ids"] + [tok.eos_token_id]
    return torch.tensor(ids)


def eval_tokens(limit: int | None = None, directory: Path = WEIGHTS_DIR) -> torch.Tensor:
    """The held-out token stream (first ``limit`` tokens) for :func:`mbe.evaluate.compare_language_models`."""
    ids = token_stream(load_topics(), tokenizer(directory))
    return ids if limit is None else ids[:limit]


def batches(split: str = "train", batch_size: int = 4, limit: int | None = None, labels: bool = False):
    """Windows of ``context`` held-out tokens as ``{"input_ids": [batch, context]}`` batches: for
    calibration (``split="train"``) from the end of the evaluation stream, backwards; otherwise from its start."""
    ids = eval_tokens()
    ctx = RECIPE["context"]
    windows = ids[: ids.numel() // ctx * ctx].reshape(-1, ctx)
    if split == "train":
        windows = windows.flip(0)
    if limit is not None:
        windows = windows[:limit]
    return [{"input_ids": windows[i : i + batch_size]} for i in range(0, len(windows), batch_size)]


def _config(vocab_size: int, tok):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **RECIPE["config"],
    )


def train(progress: bool = True, directory: Path = WEIGHTS_DIR):
    """Train tokenizer and model with :data:`RECIPE`; returns the model and its metrics."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(RECIPE["seed"])
    train_texts, eval_texts = load_training_docs(), load_topics()
    tok = train_bpe(train_texts, RECIPE["vocab_size"], _tokenizer_path(directory))
    stream = token_stream(train_texts, tok)
    model = GPT2LMHeadModel(_config(len(tok), tok))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": RECIPE["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=RECIPE["lr"],
        betas=(0.9, 0.95),
    )
    steps, warmup = RECIPE["steps"], RECIPE["warmup"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    gen = torch.Generator().manual_seed(RECIPE["seed"])
    ctx, bs = RECIPE["context"], RECIPE["batch_size"]
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"training {NAME}", mininterval=5)
    start = time.perf_counter()
    model.train()
    for _ in it:
        starts = torch.randint(0, stream.numel() - ctx, (bs,), generator=gen)
        x = torch.stack([stream[s : s + ctx] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress:
            it.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    train_seconds = time.perf_counter() - start
    return model, {
        "eval_perplexity": perplexity(model, token_stream(eval_texts, tok)),
        "eval_tokens": int(token_stream(eval_texts, tok).numel()),
        "train_tokens": int(stream.numel()),
        "train_seconds": train_seconds,
        "parameters": sum(p.numel() for p in model.parameters()),
        "python": platform.python_version(),
    }


@torch.no_grad()
def perplexity(model, ids: torch.Tensor, stride: int | None = None) -> float:
    """Sliding-window perplexity (context = the recipe's, stride = half of it)."""
    from ..evaluate import compare_language_models

    ctx = RECIPE["context"]
    return compare_language_models(model, model, ids, context=ctx, stride=stride or ctx // 2, progress=False)["ann_ppl"]


def save(model, metrics: dict, directory: Path = WEIGHTS_DIR) -> Path:
    # the tied LM head is the embedding: store it once
    tensors = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return save_tensors(NAME, tensors, RECIPE, metrics, directory)


def load(directory: Path = WEIGHTS_DIR):
    """The shipped GPT-2 (eval mode). Raises :class:`ZooError` with the retrain command if files are missing."""
    from transformers import GPT2LMHeadModel

    tensors = load_tensors(NAME, directory)
    tok = tokenizer(directory)
    model = GPT2LMHeadModel(_config(len(tok), tok))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ZooError(
            f"the {NAME} weights do not fit the recipe's GPT-2 (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); retrain them with: python -m mbe zoo train {NAME}"
        )
    model.tie_weights()
    return model.eval()


def info(directory: Path = WEIGHTS_DIR) -> dict:
    return read_info(NAME, directory)
