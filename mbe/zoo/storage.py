"""Where the zoo's trained models live: ``weights/<name>.safetensors`` (tensors) beside
``weights/<name>.json`` (the recipe that trained them and the metrics it measured)."""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"


class ZooError(RuntimeError):
    """A zoo model or data set is missing; the message says how to get it."""


def save_tensors(name: str, tensors: dict, recipe: dict, metrics: dict, directory: Path = WEIGHTS_DIR) -> Path:
    """Write ``tensors`` and ``{"recipe", "metrics"}`` for model ``name``; returns the safetensors path."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    (directory / f"{name}.json").write_text(json.dumps({"recipe": recipe, "metrics": metrics}, indent=1) + "\n")
    return path


def load_tensors(name: str, directory: Path = WEIGHTS_DIR) -> dict:
    """The saved tensors of model ``name``; :class:`ZooError` with the retrain command if missing."""
    from safetensors.torch import load_file

    path = directory / f"{name}.safetensors"
    if not path.is_file():
        raise ZooError(f"{path} is missing; train it with: python -m mbe zoo train {name}")
    return load_file(str(path))


def read_info(name: str, directory: Path = WEIGHTS_DIR) -> dict:
    """``{"recipe", "metrics"}`` recorded when model ``name`` was trained."""
    return json.loads((directory / f"{name}.json").read_text())
