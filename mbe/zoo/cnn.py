"""The embedded CNN: a small ResNet (transformers' ``ResNetForImageClassification``: convolutions,
BatchNorm, ReLU, max and average pooling) trained on the same MNIST digits and split as ``vit-mnist``.

It stands in for the paper's VGG16/ResNet-34 rows of Table 1: ReLUs become ReLU neurons and max pooling
becomes pairwise spiking comparisons (``max(a, b) = b + relu(a - b)``); convolutions, BatchNorm and
average pooling are linear and stay as they are. ``python -m mbe zoo train resnet-mnist`` reproduces
the shipped weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .storage import WEIGHTS_DIR, load_tensors, read_info, save_tensors
from .vision import batches, load_mnist, train_image_classifier

NAME = "resnet-mnist"
RECIPE = {
    "config": {
        "num_channels": 1,
        "embedding_size": 16,
        "hidden_sizes": [16, 32, 64],
        "depths": [1, 1, 1],
        "layer_type": "basic",
        "hidden_act": "relu",
        "num_labels": 10,
        "downsample_in_first_stage": False,
    },
    "train_samples": 4000,
    "test_samples": 1000,
    "epochs": 15,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 0.05,
    "seed": 0,
    "augment_shift": 2,
}

__all__ = ["NAME", "RECIPE", "load", "train", "save", "info", "batches", "load_mnist"]


def _config():
    from transformers import ResNetConfig

    return ResNetConfig(**RECIPE["config"])


def train(progress: bool = True):
    """Train the ResNet with :data:`RECIPE`; returns the model and its metrics."""
    from transformers import ResNetForImageClassification

    torch.manual_seed(RECIPE["seed"])
    return train_image_classifier(ResNetForImageClassification(_config()), RECIPE, NAME, progress)


def save(model: torch.nn.Module, metrics: dict, directory: Path = WEIGHTS_DIR) -> Path:
    return save_tensors(NAME, model.state_dict(), RECIPE, metrics, directory)


def load(directory: Path = WEIGHTS_DIR) -> torch.nn.Module:
    """The shipped ResNet (eval mode). Raises :class:`ZooError` with the retrain command if weights are missing."""
    from transformers import ResNetForImageClassification

    tensors = load_tensors(NAME, directory)
    model = ResNetForImageClassification(_config())
    model.load_state_dict(tensors)
    return model.eval()


def info(directory: Path = WEIGHTS_DIR) -> dict:
    return read_info(NAME, directory)
