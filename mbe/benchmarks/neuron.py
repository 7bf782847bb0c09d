"""Neuron forward throughput per path against torch's own function on the same elements, with two bounds.

Elements: one ViT-B/16 MLP activation of a batch of 8 (``8 x 197 x 3072``). Paths: ``eager``
(:func:`mbe.neuron.functional.readout`, plain torch ops), ``compiled``
(:func:`mbe.neuron.compiled.compiled_readout`, the whole ``N x T`` loop fused by Inductor) and ``table``
(:mod:`mbe.neuron.lookup`, the exact table readout, compiled; its build is not timed; no row where the
neuron has too many change points for a table). At a T with no shipped table (32), the T=16 neuron's
parameters run for T steps: the cost is what matters here, not the fit. Bounds, timed in the
same run: ``copy`` (``x.clone()``: one read and one write of the tensor, the memory-bandwidth floor of any
elementwise readout) and ``roofline`` (a float32 matmul doing the simulation's ``4 N T`` flops per element at
the rate this machine's BLAS reaches: the arithmetic floor of simulating). The Triton kernel runs only on
CUDA: ``python -m mbe.benchmarks.gpu`` on a GPU machine.
"""

from __future__ import annotations

ELEMENTS = 8 * 197 * 3072
#: label -> (registry function, torch baseline)
CASES = {"gelu (N=4)": "gelu", "exp2 (N=8)": "exp2", "reciprocal (N=8)": "reciprocal"}
PATHS = ("eager", "compiled", "table", "copy", "roofline")


def cases(timesteps, event_timesteps):
    out = []
    for label, key in CASES.items():
        out.append((label, key, "baseline", 0, 20))
        out += [(label, key, path, t, 2 if path == "eager" else 5) for t in timesteps for path in PATHS]
    return out


def build(key: str, impl: str, timesteps: int):
    import torch

    from ..functions import get_function
    from ..neuron.compiled import compiled_readout, compiled_table_readout
    from ..neuron.functional import readout

    lo, hi = get_function(key).domain
    x = torch.rand(ELEMENTS, generator=torch.Generator().manual_seed(0)) * (hi - lo) + lo
    if impl == "baseline":
        exact = {"gelu": torch.nn.functional.gelu, "exp2": torch.exp2, "reciprocal": torch.reciprocal}[key]
        return (lambda: exact(x)), ELEMENTS
    if impl == "copy":
        return (lambda: x.clone()), ELEMENTS
    from ..neuron.mbe import MBENeuron
    from ..tables import TableError, get_neuron

    try:
        nrn = get_neuron(key, timesteps=timesteps)
    except TableError:  # no shipped table at this T (e.g. 32): the T=16 neuron's parameters run for T steps
        nrn = MBENeuron(get_neuron(key, timesteps=16).parameters_record(), timesteps, key, get_function(key).domain)
    if impl == "roofline":  # 4 N T flops per element as one matmul: 2 m k n = 4 N T ELEMENTS
        k = 512
        m = max(1, round(4 * nrn.n_basis * timesteps * ELEMENTS / (2 * k * k)))
        a, b = torch.randn(m, k), torch.randn(k, k)
        return (lambda: a @ b), ELEMENTS
    cpu = torch.device("cpu")
    if impl == "table":
        from ..neuron.lookup import build_table

        table = build_table(*nrn.prepared(torch.float32, cpu), nrn.domain)
        if table is None:  # too many change points: no table row
            return None
        kernels = nrn.prepared(torch.float32, cpu, True)
        return (lambda: compiled_table_readout(x, table, *kernels)), ELEMENTS
    path = {"eager": readout, "compiled": compiled_readout}[impl]
    args = nrn.prepared(torch.float32, cpu, impl == "compiled")
    return (lambda: path(x, *args)), ELEMENTS
