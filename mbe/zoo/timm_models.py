"""timm models in the paper profile: the paper's ViT-M/16 (timm's ``vit_medium_patch16_reg4_gap_256``).

- :func:`import_timm`: ``import timm``, or a :class:`ZooError` saying what failed. Every timm release with the
  register-token ViTs imports torchvision when it is imported, so timm needs a working torchvision on the machine
  (``pip install timm``). On the project's CPU-only machines the only torchvision wheel for torch 2.13 is a CUDA
  build that fails to import, so timm is installed there without it (pyproject's ``timm`` extra) and cannot be
  imported in a fresh process (``tests/timm_stub.py`` lends stand-ins to the tests' own process only).
- :class:`TimmClassifier`: a timm classifier called like a transformers one, ``model(pixel_values=x).logits``,
  so mbe's evaluation and conversion take it unchanged.
- :func:`preprocess`: timm's evaluation preprocessing in plain PIL + torch (no torchvision), from a checkpoint's
  ``config.json``; used by the hub path and local copies alike.
- :func:`load_folder` / :func:`write_folder`: a timm checkpoint folder (``config.json`` with ``architecture`` and
  ``pretrained_cfg``, as timm's hub repositories hold it, plus ``model.safetensors`` or ``pytorch_model.bin``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from torch import nn

from .storage import ZooError

TIMM_HINT = (
    "timm needs a working torchvision on this machine (pip install timm); on CPU-only machines where the only "
    "torchvision wheel is a CUDA build that fails to import, see pyproject's timm extra (timm then imports only "
    "with stand-ins, as tests/timm_stub.py lends them). The embedded models stand in without it: python -m mbe zoo list"
)
#: timm's defaults for a pretrained config that leaves a field out (``timm.data.resolve_data_config``)
DEFAULTS = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


def import_timm(what: str):
    """``import timm``; any failure (torchvision missing, or a build of it that fails to import) becomes a
    :class:`ZooError` naming ``what`` needed timm and what failed. A failed import leaves no ``timm`` modules behind."""
    before = set(sys.modules)
    try:
        import timm
    except Exception as exc:  # ImportError, or a broken torchvision's RuntimeError/AttributeError at import
        for name in set(sys.modules) - before:
            if name == "timm" or name.startswith("timm."):
                del sys.modules[name]
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ZooError(
            f"{what} needs timm, which failed to import ({type(exc).__name__}: {first}). {TIMM_HINT}"
        ) from exc
    return timm


class TimmClassifier(nn.Module):
    """A timm image classifier with a transformers classifier's call: ``forward(pixel_values, labels=None)``
    returns :class:`transformers.modeling_outputs.ImageClassifierOutput` (``loss`` when ``labels`` are given).
    The timm model is ``.model``; its pretrained config (preprocessing) is ``.pretrained_cfg``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.pretrained_cfg = dict(getattr(model, "pretrained_cfg", None) or {})

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
        from transformers.modeling_outputs import ImageClassifierOutput

        logits = self.model(pixel_values)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels.to(logits.device))
        return ImageClassifierOutput(loss=loss, logits=logits)


def pretrained_cfg(config: dict) -> dict:
    """The pretrained config of a timm ``config.json`` (its ``pretrained_cfg``, or the legacy single dict), with the
    input size its ``model_args`` set for a fixed-size model (as timm's ``_parse_model_cfg`` does)."""
    cfg = dict(config.get("pretrained_cfg", config))
    size = config.get("model_args", {}).get("img_size")
    if size is not None and cfg.get("fixed_input_size", False):
        size = (size, size) if isinstance(size, int) else tuple(size)
        cfg["input_size"] = (tuple(cfg.get("input_size", DEFAULTS["input_size"]))[0], *size)
    return cfg


def data_config(cfg: dict) -> dict:
    """Evaluation preprocessing from a pretrained config, with timm's defaults for what it leaves out."""
    return {k: cfg.get(k) or v for k, v in DEFAULTS.items()}


def preprocess(images, cfg: dict) -> torch.Tensor:
    """A batch ``(n, C, H, W)`` from PIL images, as timm's evaluation transform (``resolve_data_config`` +
    ``create_transform``, crop mode ``center``, square input) computes it, in PIL + torch without torchvision:
    resize the shorter side to ``floor(size / crop_pct)`` (PIL, the config's interpolation; the longer side
    ``int(scale * long / short)``, as torchvision's ``Resize``), centre crop to ``size``, scale to [0, 1],
    normalise by the config's mean and std. For the paper's ViT-M/16 (input 256, crop_pct 0.95, bicubic, mean =
    std = 0.5): resize to 269, crop 256."""
    import numpy as np
    from PIL import Image

    dc = data_config(cfg)
    _, height, width = dc["input_size"]
    if height != width or dc["crop_mode"] != "center":
        raise ZooError(f"preprocessing covers square inputs with crop_mode 'center', not {dc}")
    interp = {
        "bicubic": Image.BICUBIC,
        "bilinear": Image.BILINEAR,
        "nearest": Image.NEAREST,
        "lanczos": Image.LANCZOS,
        "box": Image.BOX,
        "hamming": Image.HAMMING,
    }.get(dc["interpolation"], Image.BICUBIC)
    scale = math.floor(height / dc["crop_pct"])
    mean = torch.tensor(dc["mean"], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(dc["std"], dtype=torch.float32).view(-1, 1, 1)
    out = []
    for im in images:
        w, h = im.size
        short, long = min(w, h), max(w, h)
        new_long = int(scale * long / short)
        im = im.resize((scale, new_long) if w <= h else (new_long, scale), interp)
        w, h = im.size
        top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
        im = im.crop((left, top, left + width, top + height))
        x = torch.from_numpy(np.array(im, dtype=np.uint8)).reshape(height, width, -1)
        out.append((x.permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(out)


def read_config(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_folder(folder, what: str) -> TimmClassifier:
    """A timm checkpoint folder (``config.json`` + weights), offline: ``timm.create_model("local-dir:<folder>",
    pretrained=True)`` (timm reads the architecture, ``model_args`` and the weights file itself)."""
    timm = import_timm(what)
    model = timm.create_model(f"local-dir:{Path(folder)}", pretrained=True)
    return TimmClassifier(model.float().eval()).eval()


def write_folder(model: nn.Module, folder, architecture: str, model_args: dict | None = None) -> Path:
    """Save a timm model as a checkpoint folder :func:`load_folder` reads: ``config.json`` (``architecture``, the
    model's ``pretrained_cfg``, ``model_args`` for non-default sizes) and ``model.safetensors``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keep = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode", "fixed_input_size", "num_classes")
    cfg = {k: v for k, v in dict(getattr(model, "pretrained_cfg", None) or {}).items() if k in keep}
    cfg["num_classes"] = int(model.num_classes)
    size = (model_args or {}).get("img_size")
    if size is not None:
        cfg["input_size"] = (3, *((size, size) if isinstance(size, int) else size))
    config = {
        "architecture": architecture,
        "num_classes": int(model.num_classes),
        "num_features": int(model.num_features),
        "pretrained_cfg": cfg,
        "model_args": dict(model_args or {}),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    return folder
