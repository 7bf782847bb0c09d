"""Spiking neurons: the pure dynamics (:mod:`.functional`) and thin module wrappers."""

from .base import DomainWarning, SpikingNeuron
from .fs import FSNeuron, FSParameters
from .functional import NeuronOutput, SigmoidSurrogate, exponential_kernel, heaviside, simulate
from .mbe import BinaryIdentity, MBENeuron, MBEParameters, binary_identity

__all__ = [
    "DomainWarning",
    "SpikingNeuron",
    "FSNeuron",
    "FSParameters",
    "NeuronOutput",
    "SigmoidSurrogate",
    "exponential_kernel",
    "heaviside",
    "simulate",
    "BinaryIdentity",
    "MBENeuron",
    "MBEParameters",
    "binary_identity",
]
