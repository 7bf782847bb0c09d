"""One prepared GPU check: the Triton neuron kernel's achieved throughput against the device's bandwidth.

Run on a CUDA machine: ``python -m mbe.benchmarks.gpu``. For each ``(function, N, T)`` it times the
kernel on 2^26 elements (median of 20 launches after warm-up and autotuning), checks it against the torch
path on a slice, and prints elements/s, achieved bandwidth (12 bytes per element) and the ratio to the
bandwidth of a plain device-to-device copy of the same tensor (an achievable peak), plus the roofline
expectation from :mod:`mbe.kernels.mbe_triton`. Nothing here runs in the tests (no GPU is assumed).
"""

from __future__ import annotations

import statistics

import torch

CASES = [("gelu", 4, 16), ("gelu", 4, 8), ("identity", 8, 16), ("exp2", 8, 16)]


def _time(fn, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def main(elements: int = 1 << 26) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("python -m mbe.benchmarks.gpu needs a CUDA device")
    from ..kernels import mbe_forward_triton
    from ..neuron.functional import readout
    from ..tables import get_neuron

    dev = torch.device("cuda")
    x = torch.rand(elements, device=dev)
    copy_s = _time(lambda: x.clone())
    copy_bw = 2 * 4 * elements / copy_s
    print(f"device {torch.cuda.get_device_name()}; copy bandwidth {copy_bw / 1e9:.0f} GB/s (read + write)")
    for fn, n, t in CASES:
        nrn = get_neuron(fn, n_basis=n, timesteps=t).to(dev)
        lo, hi = nrn.domain
        xi = x * (hi - lo) + lo
        args = (*nrn.kernels(), *nrn.readout())
        mbe_forward_triton(xi, *args)  # autotune + compile
        ref, _ = readout(xi[: 1 << 16], *args)
        got, _ = mbe_forward_triton(xi[: 1 << 16], *args)
        err = float((ref - got).abs().max())
        sec = _time(lambda xi=xi, args=args: mbe_forward_triton(xi, *args))
        bw = 12 * elements / sec
        print(
            f"{fn:9s} N={n} T={t:2d}: {elements / sec:.3g} elements/s, {bw / 1e9:.0f} GB/s "
            f"({100 * bw / copy_bw:.0f} % of copy), {4 * n * t * elements / sec / 1e12:.1f} TFLOP/s, "
            f"max |diff| vs torch {err:.2g}"
        )


if __name__ == "__main__":
    main()
