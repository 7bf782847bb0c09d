"""Neuron forward throughput per path against torch's own function on the same 2^20 elements.

Paths: ``eager`` (:func:`mbe.neuron.functional.readout`, plain torch ops, one memory pass per step) and
``compiled`` (:func:`mbe.neuron.compiled.compiled_readout`, the whole ``N x T`` loop fused by Inductor).
The Triton kernel runs only on CUDA (and, for correctness only, under the interpreter): not measured here.
"""

from __future__ import annotations

ELEMENTS = 1 << 20
#: label -> (registry function, torch baseline)
CASES = {"gelu (N=4)": "gelu", "exp2 (N=8)": "exp2", "reciprocal (N=8)": "reciprocal"}


def cases(timesteps, event_timesteps):
    out = []
    for label, key in CASES.items():
        out.append((label, key, "baseline", 0, 20))
        out += [(label, key, path, t, 5) for t in timesteps for path in ("eager", "compiled")]
    return out


def build(key: str, impl: str, timesteps: int):
    import torch

    from ..functions import get_function
    from ..neuron.compiled import compiled_readout
    from ..neuron.functional import readout

    lo, hi = get_function(key).domain
    x = torch.rand(ELEMENTS, generator=torch.Generator().manual_seed(0)) * (hi - lo) + lo
    if impl == "baseline":
        exact = {"gelu": torch.nn.functional.gelu, "exp2": torch.exp2, "reciprocal": torch.reciprocal}[key]
        return (lambda: exact(x)), ELEMENTS
    from ..tables import get_neuron

    nrn = get_neuron(key, timesteps=timesteps)
    args = (*nrn.kernels(), *nrn.readout())
    path = {"eager": readout, "compiled": compiled_readout}[impl]
    return (lambda: path(x, *args)), ELEMENTS
