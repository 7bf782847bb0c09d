"""Local copies of the paper's hub models and data sets: the ``paper`` profile without a network.

``python -m mbe reproduce --profile paper --models MODELS --data DATA`` (or :func:`mbe.zoo.hub.source` with both
folders) reads each hub model of :data:`mbe.zoo.hub.HUB` from a Hugging Face model folder and its data set from a
file layout; :class:`LocalModel` has the interface of :class:`mbe.zoo.hub.HubModel`.

Models: ``MODELS/<model id>/`` as ``save_pretrained`` (or a hub snapshot) writes it: ``config.json``, the weights
(``model.safetensors``, a sharded ``model.safetensors.index.json`` or ``pytorch_model.bin``) and the tokenizer
(``tokenizer.json``, or ``vocab.json`` + ``merges.txt``, ``vocab.txt``) or the image processor
(``preprocessor_config.json``), e.g. ``MODELS/google/vit-base-patch16-224/``, ``MODELS/gpt2-medium/``. timm models
(hub entries with ``library="timm"``, the paper's ViT-M/16) are timm checkpoint folders, as timm's hub repositories
hold them: ``MODELS/<model id>/config.json`` (timm's config: ``architecture``, ``pretrained_cfg``, optionally
``model_args``) and ``model.safetensors`` (or ``pytorch_model.bin``), e.g.
``MODELS/timm/vit_medium_patch16_reg4_gap_256.sbb_in12k_ft_in1k/``; loaded offline with
``timm.create_model("local-dir:<folder>", pretrained=True)`` (needs timm with a working torchvision), images
preprocessed from that ``config.json`` (:func:`mbe.zoo.timm_models.preprocess`).

Data: ``DATA/<data set>[/<config>]/``, named as the hub entry names the data set, with its split:

- images (``imagenet-1k``, split ``validation``): ``DATA/imagenet-1k/validation/<class>/<image>``, one folder per
  class, class index = the folders' sorted order (ImageNet's synset folders ``n01440764`` ... give the standard
  indices), images taken in file-name order (``ILSVRC2012_val_*`` names give the official order); or
  ``DATA/imagenet-1k/validation*.parquet`` with columns ``image`` (encoded bytes, or HF's ``{"bytes": ...}``)
  and ``label``.
- text classification (``glue/sst2``, split ``validation``): ``DATA/glue/sst2/validation.tsv`` (GLUE's ``dev.tsv``
  works too), ``validation.csv`` or ``validation*.parquet``, with columns ``sentence`` and ``label``.
- language modelling (``wikitext/wikitext-2-raw-v1``, split ``test``): ``DATA/wikitext/wikitext-2-raw-v1/wiki.test.raw``
  (the raw text, as in WikiText's zip) or ``test*.parquet`` with column ``text`` (rows joined by blank lines, as
  the hub path does).

As on the hub path, calibration batches (``split="train"``) are the split's last rows and evaluation batches its
first. A models folder holding a file named ``MBE_FIXTURE`` is a test fixture (:mod:`mbe.zoo.fixtures`: tiny random
models, synthetic data), and the report marks what ran on it as such.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from . import hub
from .storage import ZooError

FIXTURE_MARKER = "MBE_FIXTURE"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TASKS = ("image-classification", "text-classification", "causal-lm")


def is_fixture(models_dir) -> bool:
    """Whether ``models_dir`` holds the test fixture's marker file (tiny random models, not the paper's)."""
    return models_dir is not None and (Path(models_dir) / FIXTURE_MARKER).is_file()


def model_folder(name: str, models_dir) -> Path:
    return Path(models_dir) / hub.entry(name).model_id


def data_folder(name: str, data_dir) -> Path:
    path, config, _ = hub.entry(name).dataset
    return Path(data_dir).joinpath(path, *([config] if config else []))


def layout(name: str, models_dir, data_dir) -> str:
    """The expected files of hub model ``name`` under the two folders, in words (for error messages)."""
    e = hub.entry(name)
    m, d, split = model_folder(name, models_dir), data_folder(name, data_dir), e.dataset[2]
    if e.library == "timm":
        model = f"{m}/ with config.json (timm's, with architecture) and model.safetensors (or pytorch_model.bin)"
    else:
        extra = "preprocessor_config.json" if e.task == "image-classification" else "tokenizer.json (or vocab.json)"
        model = f"{m}/ with config.json, model.safetensors (or pytorch_model.bin) and {extra}"
    data = {
        "image-classification": f"{d}/{split}/<class>/<image> (class index = sorted folder order) or "
        f"{d}/{split}*.parquet (columns image, label)",
        "text-classification": f"{d}/{split}.tsv, {split}.csv or {split}*.parquet (columns {e.text_column}, label)",
        "causal-lm": f"{d}/wiki.{split}.raw (raw text) or {d}/{split}*.parquet (column {e.text_column})",
    }.get(e.task, f"no local layout for task {e.task!r}")
    return f"model: {model}; data: {data}"


def _data_source(name: str, data_dir) -> tuple[str, list[Path]] | None:
    """``(kind, paths)`` of the data set's first layout present, or None."""
    e = hub.entry(name)
    d, split = data_folder(name, data_dir), e.dataset[2]
    parquet = sorted(d.glob(f"{split}*.parquet")) if d.is_dir() else []
    if e.task == "image-classification":
        if (d / split).is_dir() and any(p.is_dir() for p in (d / split).iterdir()):
            return "folders", [d / split]
    elif e.task == "text-classification":
        names = [f"{split}.tsv", f"{split}.csv"] + (["dev.tsv"] if split == "validation" else [])
        for n in names:
            if (d / n).is_file():
                return n.rsplit(".", 1)[1], [d / n]
    elif e.task == "causal-lm":
        for n in (f"wiki.{split}.raw", f"{split}.txt"):
            if (d / n).is_file():
                return "raw", [d / n]
    return ("parquet", parquet) if parquet else None


def problems(name: str, models_dir, data_dir) -> list[str]:
    """Every missing piece of hub model ``name``'s local copies, each naming the exact path expected."""
    e = hub.entry(name)
    if e.task not in TASKS:
        return [f"{name}: no local layout for task {e.task!r} (local copies cover {', '.join(TASKS)})"]
    out = []
    m = model_folder(name, models_dir)
    if not m.is_dir():
        model_layout = layout(name, models_dir, data_dir).split("; data: ", 1)[0].removeprefix("model: ")
        kind = "a timm checkpoint folder" if e.library == "timm" else "a Hugging Face model folder"
        out.append(f"{model_layout} ({kind} of {e.model_id})")
    else:
        wanted = [("config.json",), WEIGHT_FILES]
        if e.library != "timm":
            wanted.append(("preprocessor_config.json",) if e.task == "image-classification" else TOKENIZER_FILES)
        for files in wanted:
            present = any((m / f).is_file() for f in files) or (files is WEIGHT_FILES and any(m.glob("*.safetensors")))
            if not present:
                out.append(" or ".join(str(m / f) for f in files))
    if _data_source(name, data_dir) is None:
        out.append(layout(name, models_dir, data_dir).split("; data: ", 1)[1])
    return out


def missing(names, models_dir, data_dir) -> dict[str, list[str]]:
    """``{name: [missing paths]}`` for every hub model in ``names`` whose local copies are incomplete."""
    return {n: p for n in names if (p := problems(n, models_dir, data_dir))}


def _select(items: list, limit: int | None, tail: bool) -> list:
    if limit is None:
        return items
    return items[-limit:] if tail else items[:limit]


def _open_image(item):
    from PIL import Image

    if isinstance(item, dict):
        item = item.get("bytes") or item.get("path")
    return Image.open(io.BytesIO(item) if isinstance(item, bytes | bytearray) else item)


def _read_table(kind: str, paths: list[Path]):
    import pandas as pd

    if kind == "parquet":
        try:
            return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
        except ImportError as exc:
            raise ZooError(f"reading {paths[0]} needs pyarrow: pip install pyarrow ({exc})") from exc
    if kind == "tsv":  # GLUE's files: tab-separated, quotes are text
        return pd.read_csv(paths[0], sep="\t", quoting=csv.QUOTE_NONE)
    return pd.read_csv(paths[0])


class LocalModel(hub.HubModel):
    """A hub model read from local copies (see the module docstring for the layouts); same interface as
    :class:`mbe.zoo.hub.HubModel`. Raises :class:`ZooError` naming every missing path."""

    def __init__(self, name: str, models_dir, data_dir):
        super().__init__(name)
        self.models_dir, self.data_dir = Path(models_dir), Path(data_dir)
        lacking = problems(name, models_dir, data_dir)
        if lacking:
            raise ZooError(
                f"local copies of {name} are incomplete; missing: {'; '.join(lacking)}. Expected layout: "
                + layout(name, models_dir, data_dir)
            )
        self.model_path = model_folder(name, models_dir)
        self.data_kind, self.data_paths = _data_source(name, data_dir)
        self.fixture = is_fixture(models_dir)

    def _from_folder(self, what: str, fn):
        try:
            return fn(str(self.model_path), local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ZooError(
                f"could not load the {what} of {self.NAME} from {self.model_path} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Expected: "
                + layout(self.NAME, self.models_dir, self.data_dir)
            ) from exc

    def load(self):
        import transformers

        if self.entry.library == "timm":
            from .timm_models import import_timm, load_folder

            import_timm(f"{self.NAME} ({self.model_path})")  # a ZooError of its own when timm cannot be imported
            return self._from_folder("model", lambda p, **kw: load_folder(p, self.NAME))
        cls = {
            "image-classification": transformers.AutoModelForImageClassification,
            "text-classification": transformers.AutoModelForSequenceClassification,
            "causal-lm": transformers.AutoModelForCausalLM,
        }[self.entry.task]
        return self._from_folder("model", lambda p, **kw: cls.from_pretrained(p, dtype=torch.float32, **kw)).eval()

    def info(self) -> dict:
        kind = "fixture (tiny random model, synthetic data; not the paper's)" if self.fixture else "local copy"
        data = ", ".join(str(p) for p in self.data_paths)
        return {"metrics": {"model": self.entry.model_id, "data": data, "source": f"{kind}: {self.model_path}"}}

    def _texts(self) -> tuple[list[str], list[int] | None]:
        col = self.entry.text_column
        if self.data_kind == "raw":
            return [self.data_paths[0].read_text(encoding="utf-8")], None
        frame = _read_table(self.data_kind, self.data_paths)
        needed = [col] + (["label"] if self.entry.task == "text-classification" else [])
        absent = [c for c in needed if c not in frame.columns]
        if absent:
            raise ZooError(f"{self.data_paths[0]} lacks column(s) {absent} (has {list(frame.columns)})")
        texts = frame[col].fillna("").astype(str).tolist()
        return texts, frame["label"].astype(int).tolist() if "label" in frame.columns else None

    def _images(self) -> list[tuple[object, int]]:
        """``(image or path, label)`` pairs in the split's order."""
        if self.data_kind == "folders":
            root = self.data_paths[0]
            classes = sorted(p.name for p in root.iterdir() if p.is_dir())
            items = [
                (f, i)
                for i, c in enumerate(classes)
                for f in (root / c).iterdir()
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            ]
            return sorted(items, key=lambda x: (x[0].name, x[1]))
        frame = _read_table("parquet", self.data_paths)
        absent = [c for c in ("image", "label") if c not in frame.columns]
        if absent:
            raise ZooError(f"{self.data_paths[0]} lacks column(s) {absent} (has {list(frame.columns)})")
        return list(zip(frame["image"], frame["label"].astype(int), strict=True))

    def eval_tokens(self, limit: int | None = None) -> torch.Tensor:
        if self.entry.task != "causal-lm":
            raise ZooError(f"{self.NAME} is a classifier: use batches()")
        texts, _ = self._texts()
        tok = self._from_folder("tokenizer", _auto("AutoTokenizer"))
        ids = torch.tensor(tok("\n\n".join(texts))["input_ids"])
        return ids if limit is None else ids[:limit]

    def batches(self, split: str = "test", batch_size: int = 32, limit: int | None = None, labels: bool = True):
        if self.entry.task == "causal-lm":
            return super().batches(split, batch_size, limit, labels)
        tail = split == "train"
        out = []
        if self.entry.task == "image-classification":
            if self.entry.library == "timm":
                proc = hub.timm_processor(self.model_path / "config.json")
            else:
                proc = hub.transformers_processor(self._from_folder("image processor", _auto("AutoImageProcessor")))
            items = _select(self._images(), limit, tail)
            for i in range(0, len(items), batch_size):
                chunk = items[i : i + batch_size]
                images = [_open_image(x).convert("RGB") for x, _ in chunk]
                b = {"pixel_values": proc(images)}
                if labels:
                    b["labels"] = torch.tensor([y for _, y in chunk])
                out.append(b)
            return out
        texts, targets = self._texts()
        rows = _select(list(zip(texts, targets, strict=True)), limit, tail)
        tok = self._from_folder("tokenizer", _auto("AutoTokenizer"))
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            enc = tok([t for t, _ in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt")
            b = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
            if labels:
                b["labels"] = torch.tensor([y for _, y in chunk])
            out.append(b)
        return out


def _auto(cls_name: str):
    def load(path, **kwargs):
        import transformers

        return getattr(transformers, cls_name).from_pretrained(path, **kwargs)

    return load
