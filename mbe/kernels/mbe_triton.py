r"""Triton kernel for the neuron forward pass: the N x T loop fused in registers.

One program handles ``BLOCK`` input elements. Per element it reads ``x`` once, walks every basis and
step with the membrane, the running output and the spike count held in registers, and writes the
decoded output and the spike count: 4 bytes in, 8 bytes out per element (fp32), against
:math:`N T` compare/subtract/add triples of arithmetic. The ``[N, T]`` kernels are tiny scalar
loads that stay in cache. Numerics follow :func:`mbe.neuron.functional.simulate` step by step
(spikes are 0/1, so ``r*s`` and ``d*s`` are exact whether or not the compiler fuses them).

Roofline expectation (fp32): 12 bytes of memory traffic per element (``x`` in; output and count out)
against about ``4 N T`` flops (compare, two multiply-adds, the count) plus ``3 N T`` scalar loads that
hit L1/constant cache. That is 21 flops/byte at N=4, T=16 (GELU) and 43 at N=8, T=16 (the identity
encoder), above the ridge point of current GPUs (H200: ~67 TFLOP/s fp32 over ~4.8 TB/s, about 14
flops/byte), so the kernel should be compute-bound: at best ~2.6e11 elements/s for GELU N=4, T=16 on an
H200 (67e12 / 256), about 65 % of the ~4e11 elements/s that bandwidth alone would allow.
``python -m mbe.benchmarks.gpu`` measures achieved elements/s and bandwidth against a device copy.

Block size and warps are autotuned per ``(N, T)`` over :data:`CONFIGS` (under ``TRITON_INTERPRET=1``,
for correctness tests on CPU, a single config is used: the interpreter would run every one).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

#: autotuning space: elements per program x warps
CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b in (256, 512, 1024, 2048) for w in (4, 8)]
if os.environ.get("TRITON_INTERPRET") == "1":
    CONFIGS = [triton.Config({"BLOCK": 1024}, num_warps=4)]


@triton.autotune(configs=CONFIGS, key=["N", "T"])
@triton.jit
def _mbe_forward_kernel(
    x_ptr,
    out_ptr,
    count_ptr,
    d_ptr,
    r_ptr,
    vth_ptr,
    w_ptr,
    off_ptr,
    bias,
    n_elements,
    N: tl.constexpr,
    T: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n_elements
    x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    out = tl.zeros([BLOCK], dtype=tl.float32) + bias
    count = tl.zeros([BLOCK], dtype=tl.float32)
    for n in tl.static_range(N):
        u = x - tl.load(off_ptr + n)
        o = tl.zeros([BLOCK], dtype=tl.float32)
        for t in tl.static_range(T):
            s = ((u - tl.load(vth_ptr + n * T + t)) >= 0).to(tl.float32)
            u = u - tl.load(r_ptr + n * T + t) * s
            o = o + tl.load(d_ptr + n * T + t) * s
            count = count + s
        out = out + tl.load(w_ptr + n) * o
    tl.store(out_ptr + idx, out, mask=mask)
    tl.store(count_ptr + idx, count, mask=mask)


def mbe_forward(x, d, r, vth, weight, bias, input_offset):
    """Launch the fused kernel.

    Args:
        x: ``[...]`` float tensor (computed in fp32, returned in ``x.dtype``).
        d, r, vth: ``[N, T]``; weight, input_offset: ``[N]``; bias: scalar.
    Returns:
        ``(output [...], spike_counts [...])``.
    """
    n_basis, timesteps = d.shape
    dev = x.device
    xc = x.contiguous().reshape(-1)
    out = torch.empty(xc.shape, dtype=torch.float32, device=dev)
    count = torch.empty(xc.shape, dtype=torch.float32, device=dev)

    def table(v):
        return v.detach().to(device=dev, dtype=torch.float32).contiguous()

    offset = input_offset if input_offset is not None else torch.zeros(n_basis)
    n = xc.numel()
    if n:

        def grid(meta):
            return (triton.cdiv(n, meta["BLOCK"]),)

        _mbe_forward_kernel[grid](
            xc,
            out,
            count,
            table(d),
            table(r),
            table(vth),
            table(weight),
            table(offset),
            float(bias),
            n,
            N=n_basis,
            T=timesteps,
        )
    return out.reshape(x.shape).to(x.dtype), count.reshape(x.shape).to(x.dtype)
