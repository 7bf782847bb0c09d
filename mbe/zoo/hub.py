"""The hub path: the paper's own models and data sets, fetched with ``from_pretrained`` and HF ``datasets``.

Needs a network (and realistically a GPU); offline every loader raises :class:`ZooError` saying what was
unreachable and what works offline instead. :func:`source` returns the same models read from local copies
(:mod:`mbe.zoo.local`) when given a models and a data folder. :func:`mbe.zoo.tiny.tiny_model` builds small randomly
initialised models of the same architectures (and 26 more), which is how conversion of each architecture is tested
without a network.

=====================  ======================================================  ===============================
name                   model                                                   data (split)
=====================  ======================================================  ===============================
vit-b16-imagenet       google/vit-base-patch16-224                             imagenet-1k (validation; gated)
vit-m16-imagenet       timm/vit_medium_patch16_reg4_gap_256.sbb_in12k_ft_in1k  imagenet-1k (validation; gated)
roberta-sst2           textattack/roberta-base-SST-2                           glue/sst2 (validation)
gpt2-medium-wikitext2  gpt2-medium                                             wikitext-2-raw-v1 (test)
=====================  ======================================================  ===============================

Models with ``library="timm"`` (the paper's ViT-M/16) load with ``timm.create_model("hf-hub:<id>",
pretrained=True)`` wrapped in :class:`mbe.zoo.timm_models.TimmClassifier` (called as ``model(pixel_values=x)``,
returning ``.logits`` like a transformers classifier), and need timm with a working torchvision
(:func:`mbe.zoo.timm_models.import_timm` says so otherwise); their images are preprocessed by
:func:`mbe.zoo.timm_models.preprocess` (timm's evaluation transform from the checkpoint's ``config.json``, without
torchvision).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .storage import ZooError


@dataclass(frozen=True)
class HubEntry:
    model_id: str
    task: str  # "image-classification" | "text-classification" | "causal-lm"
    dataset: tuple[str, str | None, str]  # (path, config name, split)
    text_column: str = "sentence"
    library: str = "transformers"  # "transformers" (from_pretrained) | "timm" (timm.create_model)


HUB = {
    "vit-b16-imagenet": HubEntry(
        "google/vit-base-patch16-224", "image-classification", ("imagenet-1k", None, "validation")
    ),
    # the paper's ViT-M/16 (timm's vit_medium_patch16_reg4_gap_256, ImageNet-1k): the exact weight tag the paper used
    # is not stated; sbb_in12k_ft_in1k is timm's default (first) ImageNet-1k tag of that architecture
    "vit-m16-imagenet": HubEntry(
        "timm/vit_medium_patch16_reg4_gap_256.sbb_in12k_ft_in1k",
        "image-classification",
        ("imagenet-1k", None, "validation"),
        library="timm",
    ),
    "roberta-sst2": HubEntry("textattack/roberta-base-SST-2", "text-classification", ("glue", "sst2", "validation")),
    "gpt2-medium-wikitext2": HubEntry("gpt2-medium", "causal-lm", ("wikitext", "wikitext-2-raw-v1", "test"), "text"),
}

OFFLINE_HINT = (
    "This needs the Hugging Face hub (a network). Offline, the embedded models stand in: python -m mbe zoo list"
)


def entry(name: str) -> HubEntry:
    if name not in HUB:
        raise ZooError(f"unknown hub model {name!r}; available: {', '.join(HUB)}")
    return HUB[name]


def _fetch(what: str, fn, *args, **kwargs):
    """Call a hub loader; turn any failure to reach the hub into a :class:`ZooError` that says what failed."""
    try:
        return fn(*args, **kwargs)
    except (OSError, ValueError, ConnectionError, RuntimeError) as exc:
        raise ZooError(
            f"could not fetch {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). {OFFLINE_HINT}"
        ) from exc


def load(name: str):
    """The pretrained model (eval mode, float32)."""
    import transformers

    e = entry(name)
    if e.library == "timm":
        from .timm_models import TimmClassifier, import_timm

        timm = import_timm(f"{name} ({e.model_id})")
        model = _fetch(e.model_id, timm.create_model, "hf-hub:" + e.model_id, pretrained=True)
        return TimmClassifier(model.float().eval()).eval()
    cls = {
        "image-classification": transformers.AutoModelForImageClassification,
        "text-classification": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
    }[e.task]
    return _fetch(e.model_id, cls.from_pretrained, e.model_id, dtype=torch.float32).eval()


def _dataset(e: HubEntry, limit: int | None, tail: bool = False):
    try:
        import datasets
    except ImportError as exc:
        raise ZooError(
            "the hub data sets need the datasets package: pip install datasets (or pip install -e '.[hub]')"
        ) from exc
    path, config, split = e.dataset
    if limit is not None and e.task != "causal-lm":
        split = f"{split}[-{limit}:]" if tail else f"{split}[:{limit}]"
    return _fetch(f"data set {path}/{config or ''} ({split})", datasets.load_dataset, path, config, split=split)


def transformers_processor(proc):
    """Images -> ``pixel_values`` with a transformers image processor."""
    return lambda images: proc(images, return_tensors="pt")["pixel_values"]


def timm_processor(config_path):
    """Images -> ``pixel_values`` for a timm checkpoint, from its ``config.json``
    (:func:`mbe.zoo.timm_models.preprocess`; no timm or torchvision needed)."""
    from .timm_models import preprocess, pretrained_cfg, read_config

    cfg = pretrained_cfg(read_config(config_path))
    return lambda images: preprocess(images, cfg)


def batches(name: str, batch_size: int = 32, limit: int | None = None, labels: bool = True, tail: bool = False):
    """Labelled evaluation batches (dicts of forward kwargs + ``labels``) for a hub classifier; ``tail``
    takes the split's last ``limit`` rows instead of its first (calibration data disjoint from evaluation)."""
    import transformers

    e = entry(name)
    if e.task == "causal-lm":
        raise ZooError(f"{name} is a language model: use eval_tokens({name!r}) for perplexity")
    data = _dataset(e, limit, tail)
    out = []
    if e.task == "image-classification":
        if e.library == "timm":
            from huggingface_hub import hf_hub_download

            config_path = _fetch(f"{e.model_id} (config.json)", hf_hub_download, e.model_id, "config.json")
            proc = timm_processor(config_path)
        else:
            proc = transformers_processor(
                _fetch(e.model_id, transformers.AutoImageProcessor.from_pretrained, e.model_id)
            )
        for i in range(0, len(data), batch_size):
            rows = data[i : i + batch_size]
            b = {"pixel_values": proc([im.convert("RGB") for im in rows["image"]])}
            if labels:
                b["labels"] = torch.tensor(rows["label"])
            out.append(b)
        return out
    tok = _fetch(e.model_id, transformers.AutoTokenizer.from_pretrained, e.model_id)
    for i in range(0, len(data), batch_size):
        rows = data[i : i + batch_size]
        enc = tok(rows[e.text_column], padding=True, truncation=True, max_length=128, return_tensors="pt")
        b = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if labels:
            b["labels"] = torch.tensor(rows["label"])
        out.append(b)
    return out


def eval_tokens(name: str, limit: int | None = None) -> torch.Tensor:
    """The evaluation text of a hub language model as one token stream (documents joined by blank lines)."""
    import transformers

    e = entry(name)
    if e.task != "causal-lm":
        raise ZooError(f"{name} is a classifier: use batches({name!r})")
    text = "\n\n".join(_dataset(e, None)[e.text_column])
    tok = _fetch(e.model_id, transformers.AutoTokenizer.from_pretrained, e.model_id)
    ids = torch.tensor(tok(text)["input_ids"])
    return ids if limit is None else ids[:limit]


def unreachable(timeout: float = 10.0) -> dict[str, str]:
    """``{name: reason}`` for every hub model whose page cannot be reached (empty when all can)."""
    try:
        from huggingface_hub import HfApi
    except ImportError as exc:  # transformers depends on it, so this is unusual
        return {name: f"huggingface_hub is not installed ({exc})" for name in HUB}
    out = {}
    for name, e in HUB.items():
        try:
            HfApi().model_info(e.model_id, timeout=timeout)
        except Exception as exc:  # offline, DNS, HTTP errors: all mean "cannot run the paper profile"
            first_line = str(exc).splitlines()[0][:160] if str(exc) else ""
            out[name] = f"{e.model_id}: {type(exc).__name__}: {first_line}"
    return out


class HubModel:
    """A hub model with the zoo modules' interface (``NAME``, ``load``, ``batches``, ``eval_tokens``,
    ``info``), so the notebooks' ``paper`` profile runs the same code as the embedded models.

    Calibration batches (``split="train"``) come from the evaluation split's last rows, evaluation batches
    from its first rows: the paper's calibration sets are not stated, and this keeps the two disjoint
    without downloading a training split (ImageNet's is 140 GB).
    """

    context = 128

    def __init__(self, name: str):
        self.entry = entry(name)
        self.NAME = name

    def load(self):
        return load(self.NAME)

    def info(self) -> dict:
        return {"metrics": {"model": self.entry.model_id, "data": "/".join(x for x in self.entry.dataset if x)}}

    def eval_tokens(self, limit: int | None = None) -> torch.Tensor:
        return eval_tokens(self.NAME, limit)

    def batches(self, split: str = "test", batch_size: int = 32, limit: int | None = None, labels: bool = True):
        if self.entry.task == "causal-lm":
            ids = self.eval_tokens()
            windows = ids[: ids.numel() // self.context * self.context].reshape(-1, self.context)
            windows = windows.flip(0) if split == "train" else windows  # calibration from the end
            windows = windows[:limit] if limit is not None else windows
            return [{"input_ids": windows[i : i + batch_size]} for i in range(0, len(windows), batch_size)]
        return batches(self.NAME, batch_size, limit, labels, tail=split == "train")


def source(name: str, models_dir=None, data_dir=None):
    """Where the paper profile's model ``name`` comes from: local copies (:class:`mbe.zoo.local.LocalModel`,
    Hugging Face model folders, or timm checkpoint folders, under ``models_dir`` and data in the documented layouts
    under ``data_dir``) when both folders are given, else the hub (:class:`HubModel`)."""
    if models_dir is None and data_dir is None:
        return HubModel(name)
    if models_dir is None or data_dir is None:
        raise ZooError("local copies need both folders: models_dir (--models) and data_dir (--data)")
    from .local import LocalModel

    return LocalModel(name, models_dir, data_dir)
