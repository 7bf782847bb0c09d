"""Spiking Transformer operators (paper section 3), each in ``fused`` and ``event`` mode.

``spiking_mul``, ``spiking_matmul``: activation x activation products (Eq. 9-12);
``spiking_softmax`` (Eq. 13); ``spiking_layer_norm``, ``spiking_rms_norm``; ``spiking_activation``,
``spiking_swiglu`` (with :class:`Tail` neurons beyond the domain); ``spiking_max_pool2d`` (CNNs). Statistics go into an :class:`OpStats` the caller passes.
"""

from ..stats import OpStats, SpikeStats
from .encoding import MODES, encode, site_neuron
from .nonlinear import (
    Tail,
    spiking_activation,
    spiking_layer_norm,
    spiking_max_pool2d,
    spiking_rms_norm,
    spiking_softmax,
    spiking_swiglu,
)
from .products import spiking_matmul, spiking_mul

__all__ = [
    "MODES",
    "encode",
    "site_neuron",
    "Tail",
    "spiking_activation",
    "spiking_layer_norm",
    "spiking_max_pool2d",
    "spiking_rms_norm",
    "spiking_softmax",
    "spiking_swiglu",
    "spiking_matmul",
    "spiking_mul",
    "OpStats",
    "SpikeStats",
]
