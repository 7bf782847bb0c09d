"""The registry of primitive functions a neuron can be fitted to, with the paper's default domains.

Domains and basis counts follow the paper's appendix G.1 where it states them (GELU (-120, 10),
N=4; 2^x [0, 1], 1/x [0.5, 1], 1/sqrt(x) [0.5, 2], N=8; identity N=8). Where it is silent the
choice is ours and marked ``(mbe)`` in the description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from . import paper
from .neuron.base import validate_counts, validate_domain


@dataclass(frozen=True)
class FunctionSpec:
    """One target function: its torch implementation, default domain and paper basis count."""

    name: str
    fn: Callable[[Tensor], Tensor]
    domain: tuple[float, float]
    n_basis: int
    description: str = ""

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


_REGISTRY: dict[str, FunctionSpec] = {}


def register_function(
    name: str, fn: Callable[[Tensor], Tensor], domain, n_basis: int = 4, description: str = "", overwrite: bool = False
) -> FunctionSpec:
    """Add a target function so ``fit_neuron``/``get_neuron`` accept it by name.

    Args:
        name: registry key (a valid identifier-like string, e.g. ``"softplus"``).
        fn: elementwise torch function, finite on ``domain``.
        domain: ``(low, high)`` default fitting interval.
        n_basis: default N.
        overwrite: replace an existing entry instead of raising.
    """
    if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
        raise ValueError(f"function name must be a non-empty alphanumeric/underscore string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"function {name!r} is already registered; pass overwrite=True to replace it")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    domain = validate_domain(domain)
    validate_counts(n_basis, 1)
    probe = fn(torch.linspace(domain[0], domain[1], 101, dtype=torch.float64))
    if not isinstance(probe, Tensor) or probe.shape != (101,) or not bool(torch.isfinite(probe).all()):
        raise ValueError(f"fn for {name!r} must map a 1-D tensor elementwise to finite values on {domain}")
    spec = FunctionSpec(name, fn, domain, int(n_basis), description)
    _REGISTRY[name] = spec
    return spec


def get_function(name: str) -> FunctionSpec:
    """The registered :class:`FunctionSpec` called ``name`` (``ValueError`` naming the registered ones if none)."""
    if not isinstance(name, str):
        raise TypeError(f"function must be a registered name (str), got {type(name).__name__}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown function {name!r}; registered: {sorted(_REGISTRY)}. "
            f"Add your own with mbe.register_function(name, fn, domain)."
        ) from None


def list_functions() -> list[str]:
    return sorted(_REGISTRY)


def _gelu_tanh(x: Tensor) -> Tensor:
    return torch.nn.functional.gelu(x, approximate="tanh")


register_function(
    "gelu",
    torch.nn.functional.gelu,
    *paper.APPENDIX_G1["gelu"],
    "GELU, erf form (ViT, BERT/RoBERTa); domain from the paper's appendix G.1",
)
register_function(
    "gelu_tanh", _gelu_tanh, *paper.APPENDIX_G1["gelu"], "GELU, tanh form (GPT-2's gelu_new); GELU's domain (mbe)"
)
register_function("tanh", torch.tanh, (-10.0, 10.0), 4, "tanh (pooler); domain (mbe)")
register_function(
    "silu", torch.nn.functional.silu, (-20.0, 20.0), 4, "SiLU/Swish (Llama's SwiGLU gate); domain and N (mbe)"
)
register_function("sigmoid", torch.sigmoid, (-20.0, 20.0), 4, "logistic sigmoid; domain and N (mbe)")
register_function(
    "relu", torch.relu, (-20.0, 20.0), 4, "ReLU (CNNs; max pooling as b + relu(a - b)); domain and N (mbe)"
)
register_function("exp2", torch.exp2, *paper.APPENDIX_G1["exp2"], "2^x on the fractional part (softmax)")
register_function("reciprocal", torch.reciprocal, *paper.APPENDIX_G1["reciprocal"], "1/x on the mantissa (softmax)")
register_function("rsqrt", torch.rsqrt, *paper.APPENDIX_G1["rsqrt"], "1/sqrt(x) on the mantissa (LayerNorm)")
register_function(
    "identity",
    lambda x: x.clone(),
    *paper.APPENDIX_G1["identity"],
    "identity encoder for activation products; unit domain rescaled per site (mbe)",
)
