"""The fused CPU inference path: :func:`mbe.neuron.functional.readout_per_basis` compiled by ``torch.compile``.

Inductor turns the unrolled ``N x T`` loop of :func:`readout_per_basis` into one C++ loop over the elements
(vectorised, OpenMP-parallel): every element's membrane stays in a register, so the cost is one read of
``x`` and two writes (output, spike counts) plus ``~4 N T`` flops per element, instead of ``~4 N T``
passes over memory in eager mode. Results match the eager path (the same operations on each element;
``tests/test_neuron.py`` checks it).

Few compiled graphs: kernels are padded up to a bucket (``N`` and ``T`` rounded up to a power of two,
at least 4 and 8) with bases and steps that can never fire (threshold ``+inf``, zero intensity, reset and
weight), which leaves every real element's arithmetic, and so the result, unchanged. So one graph serves
each ``(N bucket, T bucket, dtype)``; element counts are dynamic (the input is flattened), so batch and
sequence changes do not recompile either. Every input size takes this path (a call costs tens of
microseconds of guards and launch, where the eager loop costs ``3 T`` tensor ops): inputs smaller than
:data:`MIN_PADDED` are padded up to it, as dynamic shapes specialise sizes 0 and 1. The first call of each
key compiles (seconds; Inductor's on-disk cache makes later processes faster). If compiling fails (no C++
compiler, an unsupported platform) the path warns once and falls back to eager for the rest of the process.
Set ``MBE_COMPILE=0`` to turn it off. :func:`compiled_table_readout` does the same for the exact table
readout (:mod:`mbe.neuron.lookup`), :func:`compiled_elementwise` for the closed forms of halving-ladder
neurons (:mod:`mbe.neuron.ladder`).
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch import Tensor

from .functional import readout, readout_per_basis
from .lookup import LookupTable, table_readout

#: inputs are padded up to this many elements (their results are dropped): dynamic shapes
#: specialise sizes 0 and 1, which would compile a graph for each
MIN_PADDED = 8

_compiled = None
_compiled_forms: dict = {}
_failed: Optional[str] = None


def compile_enabled() -> bool:
    """Whether the compiled path is on (``MBE_COMPILE`` unset or not ``0``, and no earlier failure)."""
    return _failed is None and os.environ.get("MBE_COMPILE", "1") != "0"


#: Inductor options of every compiled path.
#:
#: ``cpp.dynamic_threads``: the generated C++ always has an OpenMP parallel loop and takes the thread count at run
#: time. Without it Inductor decides at compile time, from the size of the call that compiled the graph, whether the
#: loop is parallel at all: a graph first called on a few elements (one row of statistics) then ran single-threaded
#: on every later input, whatever its size, and Inductor's on-disk cache handed that serial graph to later processes
#: too (measured: GELU N=4, T=8 on 4.8M elements, 2 cores, 20-35 ms after a first call on 8 elements, 10 ms after
#: one on 4M; with this option 10 ms either way).
#:
#: ``max_fusion_size``: how many nodes one fused kernel may take (Inductor's default 64). A readout of ``N T`` steps
#: is a few nodes per step; from about 100 steps on, with the default, the kernel kept intermediate buffers the size
#: of the input, written on every call (N=8, T=16: seven input-sized buffers allocated per call instead of the two
#: outputs). Measured on 4.8M elements, 2 cores, random kernels: N=8, T=16 90 -> 47 ms and N=4, T=32 83 -> 62 ms;
#: N=16, T=16 and N=32, T=8 within noise; the same numbers and compile time.
INDUCTOR_OPTIONS = {"cpp.dynamic_threads": True, "max_fusion_size": 4096}


def _compile(fn):
    """``fn`` through ``torch.compile``: sizes dynamic, :data:`INDUCTOR_OPTIONS`."""
    return torch.compile(fn, dynamic=True, options=INDUCTOR_OPTIONS)


def _fn():
    global _compiled
    if _compiled is None:
        _compiled = _compile(readout_per_basis)
    return _compiled


def _form_fn(readout_fn):
    """A builder of ``readout_fn`` compiled (one per function, built on first use)."""

    def build():
        if readout_fn not in _compiled_forms:
            _compiled_forms[readout_fn] = _compile(readout_fn)
        return _compiled_forms[readout_fn]

    return build


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << (n - 1).bit_length())


def pad_to_bucket(d: Tensor, r: Tensor, vth: Tensor, weight: Tensor, input_offset: Optional[Tensor]):
    """Pad ``[N, T]`` kernels to the compile bucket with silent bases and steps (see the module docstring)."""
    n, t = d.shape
    nb, tb = _bucket(n, 4), _bucket(t, 8)
    if input_offset is None:
        input_offset = torch.zeros(n, dtype=d.dtype, device=d.device)  # x - 0 == x exactly
    if (nb, tb) == (n, t):
        return d, r, vth, weight, input_offset
    grow = (0, tb - t, 0, nb - n)  # (last dim: after, first dim: after)
    return (
        torch.nn.functional.pad(d, grow),
        torch.nn.functional.pad(r, grow),
        torch.nn.functional.pad(vth, grow, value=float("inf")),
        torch.nn.functional.pad(weight, (0, nb - n)),
        torch.nn.functional.pad(input_offset, (0, nb - n)),
    )


def _compile_failed(exc: Exception) -> None:
    global _failed
    _failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    warnings.warn(
        f"mbe: torch.compile of the neuron readout failed ({_failed}); using the eager path "
        f"(slower, same results). Set MBE_COMPILE=0 to skip the attempt.",
        RuntimeWarning,
        stacklevel=3,
    )


def _pad(x: Tensor) -> Tensor:
    """``x`` flattened, and padded up to :data:`MIN_PADDED` elements by repeating its first (in-domain) element."""
    flat = x.reshape(-1)
    if flat.numel() < MIN_PADDED:
        flat = torch.cat([flat, flat[:1].expand(MIN_PADDED - flat.numel())])
    return flat


#: dynamo's limits while a compiled path runs: room for many graphs per function (one per (N, T) bucket and dtype)
DYNAMO_LIMITS = {"recompile_limit": 512, "accumulated_recompile_limit": 4096}


def _run(compiled_fn, eager_fn, *args):
    """``compiled_fn()(*args)`` under :data:`DYNAMO_LIMITS` (set for the call and restored after it: a direct set
    and restore costs about 9 us a call where ``torch._dynamo.config.patch`` cost about 20 us, on calls of which a
    forward makes 70-140); on a failure that the eager ``eager_fn(*args)`` does not share (compiler missing or
    broken) one warning, compiling off for the process, and the eager result. An error the eager function raises
    too (the input's own) is raised as eager raises it, and compiling stays on."""
    config = torch._dynamo.config
    saved = {name: getattr(config, name) for name in DYNAMO_LIMITS}
    try:
        for name, value in DYNAMO_LIMITS.items():
            setattr(config, name, value)
        with torch.no_grad():
            return compiled_fn()(*args)
    except Exception as exc:
        result = eager_fn(*args)  # raises the input's own error
        _compile_failed(exc)
        return result
    finally:
        for name, value in saved.items():
            setattr(config, name, value)


def compiled_table_readout(x: Tensor, table: LookupTable, *kernels: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`mbe.neuron.lookup.table_readout` (compiled when compiling is on) on ``x`` (float32, inside the
    table's domain); where the table has crowded bins, the inputs that fall in them are simulated
    (:func:`compiled_readout` with the neuron's ``kernels``: ``d, r, vth, weight, bias, input_offset``). Same
    numbers as :func:`readout`."""
    numel = x.numel()
    if numel == 0:
        return torch.zeros_like(x) + kernels[4], torch.zeros_like(x)
    flat = _pad(x)
    if compile_enabled():
        out, counts, crowded = _run(_form_fn(table_readout), table_readout, flat, *table.args())
    else:
        out, counts, crowded = table_readout(flat, *table.args())
    out, counts = out[:numel], counts[:numel]
    if bool((table.first < 0).any()):  # most tables have no crowded bin: no pass over the mask
        mask = crowded[:numel] > 0
        if bool(mask.any()):
            out[mask], counts[mask] = compiled_readout(flat[:numel][mask], *kernels)
    return out.view(x.shape), counts.view(x.shape)


def compiled_readout(
    x: Tensor, d: Tensor, r: Tensor, vth: Tensor, weight: Tensor, bias: Tensor, input_offset: Optional[Tensor] = None
) -> tuple[Tensor, Tensor]:
    """:func:`readout` through ``torch.compile`` (same contract, same numbers), for inputs of any size;
    eager :func:`readout` when disabled, on CUDA tensors, or on failure. Kernels already padded to their
    bucket (:func:`pad_to_bucket`) are used as they are."""
    if not compile_enabled() or x.is_cuda:
        return readout(x, d, r, vth, weight, bias, input_offset)
    numel = x.numel()
    if numel == 0:
        return torch.zeros_like(x) + bias, torch.zeros_like(x)
    d, r, vth, weight, offset = pad_to_bucket(d, r, vth, weight, input_offset)
    out, counts = _run(_fn, readout, _pad(x), d, r, vth, weight, bias, offset)
    return out[:numel].view(x.shape), counts[:numel].view(x.shape)


def compiled_call(fn, *args):
    """``fn(*args)`` through ``torch.compile`` (one graph per ``fn``; sizes dynamic, broadcasting kept: the tensors
    are not flattened) when compiling is on and no argument is on the GPU or in float16/bfloat16, eagerly otherwise;
    the same numbers either way (Inductor computes half-precision operations in float32 without rounding each
    intermediate as eager does, hence eager there). For an operator's fused passes (e.g.
    :func:`mbe.ops.products.closed_form_product`)."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not compile_enabled() or any(t.is_cuda or t.dtype in (torch.float16, torch.bfloat16) for t in tensors):
        return fn(*args)
    return _run(_form_fn(fn), fn, *args)


def compiled_elementwise(fn, x: Tensor, *args) -> tuple[Tensor, Tensor]:
    """``fn(x, *args)`` for an elementwise ``fn`` that returns two tensors shaped like ``x`` (a closed form of
    :mod:`mbe.neuron.ladder` as :meth:`~mbe.neuron.base.SpikingNeuron.ladder` returns it, or an operator's fused
    encoding around one), through ``torch.compile`` when compiling is on and ``x`` is on the CPU (one graph per
    ``fn``; element counts dynamic), eagerly otherwise; the same numbers either way; inputs of any size."""
    numel = x.numel()
    if not compile_enabled() or x.is_cuda or numel == 0:
        return fn(x, *args)
    out, counts = _run(_form_fn(fn), fn, _pad(x), *args)
    return out[:numel].view(x.shape), counts[:numel].view(x.shape)
