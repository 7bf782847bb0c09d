"""Benchmarks: wall-time and peak-memory ratios measured in one run (``python -m mbe bench``).

Each measurement runs in a fresh spawned process so its peak memory is its own: the process builds
the inputs (and the converted model), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``),
records its resident set size, runs the operation once and reads the new peak (``VmHWM``), so
``peak_mb`` is the memory the operation added on top of what was already resident. Wall time is
the median of ``repeats`` further calls. The baseline of every row is the exact torch op measured in the
same run, so ratios are comparable on a shared, noisy machine; absolute seconds are not.
"""
from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import statistics
import time
from pathlib import Path

import pandas as pd

#: realistic operator sizes: one ViT-B/16 layer at 197 tokens
OPERATOR_CASES = {
    "softmax 12x197x197": "softmax",
    "gelu 197x3072": "gelu",
    "layer_norm 197x768": "layer_norm",
    "QK^T 12x197x64 @ 12x64x197": "qk",
    "attn V 12x197x197 @ 12x197x64": "av",
}
#: whole converted models (forward on 100 test inputs) against their ANN
MODEL_CASES = {"vit-mnist (100 digits)": "vit-mnist"}
COLUMNS = ["benchmark", "model", "mode", "timesteps", "baseline_seconds", "seconds", "time_ratio",
           "baseline_peak_mb", "peak_mb", "memory_ratio"]


def _inputs(kind: str):
    import torch

    g = torch.Generator().manual_seed(0)
    if kind == "softmax":
        return {"x": torch.randn(12, 197, 197, generator=g) * 2}
    if kind == "gelu":
        return {"x": torch.randn(197, 3072, generator=g) * 1.5 - 0.5}
    if kind == "layer_norm":
        return {"x": torch.randn(197, 768, generator=g), "w": torch.ones(768), "b": torch.zeros(768)}
    if kind == "qk":
        return {"a": torch.randn(12, 197, 64, generator=g), "b": torch.randn(12, 64, 197, generator=g)}
    if kind == "av":
        return {"a": torch.softmax(torch.randn(12, 197, 197, generator=g), -1), "b": torch.randn(12, 197, 64, generator=g)}
    raise ValueError(kind)


def _model_call(kind: str, impl: str, timesteps: int):
    """A zoo model's forward (ANN, or its spiking twin in fused/event mode) on 100 test digits."""
    from . import convert
    from .convert import ConversionConfig
    from .zoo import vision

    ann = vision.load()
    images = vision.load_mnist()[2]
    model = ann
    if impl != "exact":
        calib = vision.batches("train", batch_size=32, limit=64, labels=False)
        model = convert(ann, calib, ConversionConfig(timesteps=timesteps, mode=impl), progress=False)
    model(pixel_values=images[:1])  # loads neuron tables etc. with a one-image forward; the 100 below are measured
    return lambda: model(pixel_values=images[:100])


def _call(kind: str, impl: str, timesteps: int, inp: dict):
    import torch

    from . import ops

    if kind in MODEL_CASES.values():
        return _model_call(kind, impl, timesteps)

    if impl == "exact":
        fn = {"softmax": lambda: torch.softmax(inp["x"], -1),
              "gelu": lambda: torch.nn.functional.gelu(inp["x"]),
              "layer_norm": lambda: torch.nn.functional.layer_norm(inp["x"], (768,), inp["w"], inp["b"]),
              "qk": lambda: inp["a"] @ inp["b"], "av": lambda: inp["a"] @ inp["b"]}[kind]
    else:
        kw = {"timesteps": timesteps, "mode": impl}
        fn = {"softmax": lambda: ops.spiking_softmax(inp["x"], **kw),
              "gelu": lambda: ops.spiking_activation("gelu", inp["x"], **kw),
              "layer_norm": lambda: ops.spiking_layer_norm(inp["x"], 768, inp["w"], inp["b"], **kw),
              "qk": lambda: ops.spiking_matmul(inp["a"], inp["b"], **kw),
              "av": lambda: ops.spiking_matmul(inp["a"], inp["b"], **kw)}[kind]
    return fn


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the next reading covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(args) -> tuple[float, float]:
    kind, impl, timesteps, repeats = args
    import torch

    torch.set_grad_enabled(False)
    import warnings

    warnings.simplefilter("ignore")
    inp = _inputs(kind) if kind not in MODEL_CASES.values() else {}
    fn = _call(kind, impl, timesteps, inp)
    if impl != "exact" and kind not in MODEL_CASES.values():  # load the neuron tables before measuring
        from . import ops

        ops.spiking_softmax(torch.zeros(1, 2), timesteps=timesteps)
        ops.spiking_activation("gelu", torch.zeros(2), timesteps=timesteps)
        ops.spiking_layer_norm(torch.randn(1, 4), 4, timesteps=timesteps)
    _reset_peak()
    before = _rss_mb()
    fn()
    peak = _peak_mb() - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(peak, 0.0)


def bench_operators(timesteps=(8, 16), repeats: int = 5, event_timesteps=(8,), progress: bool = True,
                    cases: dict | None = None) -> pd.DataFrame:
    """Fused (and event) spiking operators against their exact torch ops, and converted zoo models against
    their ANN; one row per measurement."""
    cases = cases or {**OPERATOR_CASES, **MODEL_CASES}
    jobs = []
    for label, kind in cases.items():
        jobs.append((label, kind, "exact", 0))
        jobs += [(label, kind, "fused", t) for t in timesteps]
        jobs += [(label, kind, "event", t) for t in event_timesteps]
    ctx = mp.get_context("spawn")
    results = {}
    it = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc="operator benchmark")
    for label, kind, impl, t in it:
        with ctx.Pool(1) as pool:
            results[(label, impl, t)] = pool.apply(_measure, ((kind, impl, t, 1 if impl == "event" else repeats),))
    rows = []
    for label, kind, impl, t in jobs:
        if impl == "exact":
            continue
        base_s, base_mb = results[(label, "exact", 0)]
        sec, mb = results[(label, impl, t)]
        rows.append({"benchmark": "model" if kind in MODEL_CASES.values() else "operator", "model": label,
                     "mode": impl, "timesteps": t,
                     "baseline_seconds": base_s, "seconds": sec, "time_ratio": sec / base_s,
                     "baseline_peak_mb": base_mb, "peak_mb": mb,
                     "memory_ratio": mb / base_mb if base_mb > 0.05 else float("nan")})
    return pd.DataFrame(rows, columns=COLUMNS)


def machine_info() -> dict:
    import torch

    from . import __version__

    return {"mbe": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or "unknown",
            "threads": torch.get_num_threads()}


def write_report(frame: pd.DataFrame, out_dir, name: str = "bench_ops") -> tuple[Path, Path]:
    """Write ``<name>.csv`` and a short markdown summary ``<name>.md``."""  # noqa: D401
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    frame.to_csv(csv, index=False)
    info = machine_info()
    lines = [f"# Benchmark: {name}", "", "Command: `python -m mbe bench`. Machine: "
             + ", ".join(f"{k} {v}" for k, v in info.items()) + ".", "",
             "| operation | mode | T | exact (ms) | spiking (ms) | time ratio | exact peak (MB) | spiking peak (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        lines.append(f"| {r.model} | {r['mode']} | {r.timesteps} | {1e3 * r.baseline_seconds:.2f} | "
                     f"{1e3 * r.seconds:.1f} | {r.time_ratio:.1f}x | {r.baseline_peak_mb:.1f} | {r.peak_mb:.1f} |")
    md = out / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    return csv, md
