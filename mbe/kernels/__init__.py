"""Triton kernels beside their torch reference (:func:`mbe.neuron.functional.simulate`).

On CUDA tensors :class:`~mbe.neuron.base.SpikingNeuron` dispatches here automatically when Triton is
installed. On a CPU the kernel only runs under ``TRITON_INTERPRET=1`` (set before Triton is first
imported), which the tests use on small tensors; model-scale CPU work takes the torch path.
"""

from __future__ import annotations

import functools
import importlib.util


@functools.lru_cache(maxsize=1)
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Triton is importable (a CUDA device is still needed unless ``TRITON_INTERPRET=1``)."""
    return triton_installed()


def mbe_forward_triton(x, d, r, vth, weight, bias, input_offset):
    """Fused neuron forward (output, spike counts); see :mod:`mbe.kernels.mbe_triton`."""
    if not triton_installed():
        raise RuntimeError(
            "backend='triton' needs the triton package: pip install 'mbe[triton]' "
            "(on a CPU also set TRITON_INTERPRET=1 before importing triton)"
        )
    from .mbe_triton import mbe_forward

    return mbe_forward(x, d, r, vth, weight, bias, input_offset)
