"""The measuring harness shared by the benchmark suites.

Each measurement runs in a fresh spawned process so its peak memory is its own: the process builds the
case (inputs, converted model, neuron tables, compiled graphs: all warmed up by one call), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), records its resident set size, runs the operation
once and reads the new peak (``VmHWM``), so ``peak_mb`` is the memory the operation added on top of what
was already resident. Wall time is the median of ``repeats`` further calls. Every case's baseline
(the exact torch op, or the ANN) is measured in the same run, so ratios are comparable on a shared, noisy
machine; absolute seconds are not.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import platform
import resource
import statistics
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

COLUMNS = [
    "benchmark",
    "model",
    "mode",
    "timesteps",
    "baseline_seconds",
    "seconds",
    "time_ratio",
    "baseline_peak_mb",
    "peak_mb",
    "memory_ratio",
    "elements_per_second",
    "baseline_op_calls",
    "op_calls",
    "repeats",
]


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


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def _mmap_threshold(nbytes: int) -> None:
    """Fix glibc's mmap threshold (best effort; no-op elsewhere). Small: every sizeable tensor is its own
    mapping, returned to the OS when freed, so the peak RSS shows transient tensors; large: the default
    behaviour (heap reuse) for timing."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, int(nbytes))
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def count_op_calls(fn) -> int:
    """ATen operator calls (``aten::*`` events of ``torch.profiler``) during one call of ``fn``: the eager
    small-op work of a forward; a compiled region's fused loops count once per launch, not per operation."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


def _measure(args) -> tuple[float, float, int, int]:
    """In the child: build one case, warm it up, then (median of ``repeats`` calls, peak over one call,
    elements, op calls of one call: :func:`count_op_calls`)."""
    suite, key, impl, timesteps, repeats = args
    import torch

    torch.set_grad_enabled(False)
    warnings.simplefilter("ignore")
    built = importlib.import_module(f"mbe.benchmarks.{suite}").build(key, impl, timesteps)
    if built is None:  # the case does not apply (e.g. a neuron without a table)
        return float("nan"), float("nan"), 0, -1
    fn, elements, *warm = built
    if warm and not warm[0]:  # one-shot cases (fitting): the single timed call is also the peak's
        _reset_peak()
        before = _rss_mb()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, max(_peak_mb() - before, 0.0), elements, -1
    fn()  # warm-up: tables, compiled graphs, allocator
    _mmap_threshold(64 << 10)  # tensors over 64 KiB map and unmap: the peak covers what the call allocates
    _reset_peak()
    before = _rss_mb()
    fn()
    peak = _peak_mb() - before
    _mmap_threshold(32 << 20)  # back to heap reuse for timing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(peak, 0.0), elements, count_op_calls(fn)


def run_suites(
    suites=("neuron", "operators", "models", "fitting"),
    timesteps=(8, 16),
    event_timesteps=(8, 16),
    repeats: int = 5,
    progress: bool = True,
    only: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """Run the suites' cases (each suite module lists them in ``cases``); one row per non-baseline case.
    ``only``: keep the cases whose label contains one of these strings (case-insensitive); ``ValueError`` when
    none matches, listing the labels."""
    jobs = []
    for suite in suites:
        module = importlib.import_module(f"mbe.benchmarks.{suite}")
        jobs += [(suite, *case) for case in module.cases(tuple(timesteps), tuple(event_timesteps))]
    if only:
        kept = [job for job in jobs if any(word.lower() in job[1].lower() for word in only)]
        if not kept:
            labels = sorted({job[1] for job in jobs})
            raise ValueError(f"bench --only {list(only)} matches no case; the labels are: {labels}")
        jobs = kept
    ctx = mp.get_context("spawn")
    results = {}
    it = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc="benchmarks")
    for suite, label, key, impl, t, reps in it:
        reps = min(reps, repeats)
        if progress:
            it.set_postfix_str(f"{suite}: {label} {impl} T={t}")
        with ctx.Pool(1) as pool:
            try:
                measured = pool.apply(_measure, ((suite, key, impl, t, reps),))
            except Exception as exc:  # one broken case must not lose the others: a row of NaN, and why
                warnings.warn(f"bench {suite}: {label} {impl} T={t} failed: {type(exc).__name__}: {exc}", stacklevel=2)
                measured = (float("nan"), float("nan"), 0, -1)
            results[(suite, label, impl, t)] = (*measured, reps)
    rows = []
    for suite, label, _key, impl, t, _ in jobs:
        if impl == "baseline":
            continue
        sec, mb, elements, ops, reps = results[(suite, label, impl, t)]
        base = next((v for k, v in results.items() if k[:2] == (suite, label) and k[2] == "baseline"), None)
        base_s, base_mb, base_ops = (base[0], base[1], base[3]) if base else (float("nan"), float("nan"), -1)
        rows.append(
            {
                "benchmark": suite,
                "model": label,
                "mode": impl,
                "timesteps": t,
                "baseline_seconds": base_s,
                "seconds": sec,
                "time_ratio": sec / base_s,
                "baseline_peak_mb": base_mb,
                "peak_mb": mb,
                "memory_ratio": mb / base_mb if base_mb > 0.05 else float("nan"),
                "elements_per_second": elements / sec if elements else float("nan"),
                "baseline_op_calls": base_ops,
                "op_calls": ops,
                "repeats": reps,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def machine_info() -> dict:
    import os

    import torch

    from .. import __version__

    return {
        "mbe": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "compiled_neurons": os.environ.get("MBE_COMPILE", "1") != "0",
    }


def _ops(v) -> str:
    return "" if pd.isna(v) or v < 0 else f"{int(v):,}"


def write_report(
    frame: pd.DataFrame, out_dir, name: str = "bench", command: str = "python -m mbe bench"
) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and a short markdown summary ``<name>.md`` that names the ``command`` which measured it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    frame.to_csv(csv, index=False)
    info = machine_info()
    lines = [
        f"# Benchmarks ({name})",
        "",
        f"Command: `{command}`. Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "Baselines, measured in the same run: `neuron` torch's own function on the same elements; "
        "`operators` the exact torch op; `models` the ANN's forward; `fitting` none (seconds only). "
        "`op calls`: ATen operator calls in one call (torch.profiler; a compiled region's fused loop counts once). "
        "Neuron rows `copy` and `roofline` are bounds, not paths: a copy of the same tensor (memory bandwidth) and "
        "a matmul of the simulation's 4 N T flops per element (arithmetic).",
        "",
    ]
    for suite, grp in frame.groupby("benchmark", sort=False):
        lines += [
            f"## {suite}",
            "",
            "| case | mode | T | baseline (ms) | ms | time ratio | baseline peak (MB) | peak (MB) | elements/s "
            "| baseline op calls | op calls |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in grp.iterrows():
            lines.append(
                f"| {r.model} | {r['mode']} | {r.timesteps} | {1e3 * r.baseline_seconds:.2f} | "
                f"{1e3 * r.seconds:.1f} | {r.time_ratio:.1f}x | {r.baseline_peak_mb:.1f} | {r.peak_mb:.1f} | "
                f"{r.elements_per_second:.3g} | {_ops(r.baseline_op_calls)} | {_ops(r.op_calls)} |"
            )
        lines.append("")
    md = out / f"{name}.md"
    md.write_text("\n".join(lines))
    return csv, md
