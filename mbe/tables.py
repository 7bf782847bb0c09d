"""Fitted neuron tables: saved as JSON (never pickle), hashed, versioned, shipped in the package.

A table file holds one fitted neuron: its parameters, the recipe and seed that made it, its MSE and
fitting time, the library versions, and a SHA-256 of all of that. :func:`get_neuron` loads a shipped
table in milliseconds; a missing, stale (recipe or domain changed since) or corrupt (unreadable,
hash mismatch) table raises :class:`TableError` saying what, where, and the command that
regenerates it (``python -m mbe fit ...``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import torch

from . import paper
from .fitting import FitResult, get_recipe
from .functions import get_function
from .neuron.base import BACKENDS, validate_counts, validate_domain
from .neuron.mbe import MBENeuron, MBEParameters

FORMAT = "mbe-neuron-table"
FORMAT_VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "tables"

#: the functions whose tables ship with the package (user-registered ones are fitted on demand)
BUILTIN_FUNCTIONS = ("gelu", "gelu_tanh", "tanh", "silu", "sigmoid", "relu", "exp2", "reciprocal", "rsqrt", "identity")
SHIPPED_TIMESTEPS = (4, 6, 8, 10, 12, 16)
ACTIVATIONS_WIDE = ("gelu", "gelu_tanh", "silu", "tanh", "sigmoid")
TABLE_X_BASES = (1, 2, 4, 6, 8)


class TableError(RuntimeError):
    """A neuron table is missing, stale or corrupt; the message says how to regenerate it."""


@dataclass(frozen=True)
class TableKey:
    """What identifies a fitted table."""

    function: str
    n_basis: int
    timesteps: int
    recipe: str = "best"
    decay: bool = True

    @property
    def filename(self) -> str:
        return f"{self.function}-N{self.n_basis}-T{self.timesteps}-{self.recipe}{'' if self.decay else '-nodecay'}.json"

    def fit_command(self) -> str:
        cmd = f"python -m mbe fit {self.function} --n-basis {self.n_basis} --timesteps {self.timesteps} --recipe {self.recipe}"
        return cmd + ("" if self.decay else " --no-decay")


def shipped_table_keys() -> list[TableKey]:
    """Every table the package ships: each built-in at its paper N for T in {4, 6, 8, 10, 12, 16}, and the
    activations at N=8 too; the four Table X functions for N in {1, 2, 4, 6, 8} at T=16 under both
    recipes, and N=8 without decay."""
    keys: list[TableKey] = []
    for fn in BUILTIN_FUNCTIONS:
        for t in SHIPPED_TIMESTEPS:
            keys.append(TableKey(fn, get_function(fn).n_basis, t))
    for fn in ACTIVATIONS_WIDE:  # the activations also at N=8, for conversions that trade spikes for accuracy
        for t in SHIPPED_TIMESTEPS:
            keys.append(TableKey(fn, 8, t))
    for fn in paper.TABLE_X:
        for recipe in ("best", "paper"):
            for n in TABLE_X_BASES:
                keys.append(TableKey(fn, n, 16, recipe))
            keys.append(TableKey(fn, 8, 16, recipe, decay=False))
    return list(dict.fromkeys(keys))


def _recipe_record(key: TableKey) -> dict:
    rec = get_recipe(key.recipe).as_dict()
    rec["decay"] = key.decay
    return rec


def _digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def table_record(result: FitResult) -> dict:
    """The JSON-ready record of a fit (hash included)."""
    neuron = result.neuron
    if not isinstance(neuron, MBENeuron):
        raise TypeError("only MBE neuron fits are stored as tables")
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "function": neuron.function,
        "domain": list(neuron.domain),
        "n_basis": neuron.n_basis,
        "timesteps": neuron.timesteps,
        "decay": bool(result.recipe.decay),
        "recipe": result.recipe.as_dict(),
        "seed": result.seed,
        "params": neuron.parameters_record().to_dict(),
        "metrics": {
            "mse": result.mse,
            "train_mse": result.train_mse,
            "eval_points": 10_000,
            "fit_seconds": round(result.seconds, 3),
        },
        "created_with": {"mbe": _version(), "torch": torch.__version__.split("+")[0]},
    }
    record["sha256"] = _digest(record)
    return record


def _version() -> str:
    from . import __version__

    return __version__


def save_table(result: FitResult, directory: Union[str, Path, None] = None) -> Path:
    """Write a fit as ``<function>-N<n>-T<t>-<recipe>[-nodecay].json`` under ``directory``."""
    directory = Path(directory) if directory is not None else SHIPPED_DIR
    directory.mkdir(parents=True, exist_ok=True)
    record = table_record(result)
    key = TableKey(record["function"], record["n_basis"], record["timesteps"], result.recipe.name, record["decay"])
    path = directory / key.filename
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    _load_record.cache_clear()
    return path


@functools.lru_cache(maxsize=512)
def _load_record(path_str: str, mtime_ns: int) -> dict:
    path = Path(path_str)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TableError(f"neuron table {path} is unreadable ({exc}); it is corrupt") from None
    return record


def load_table(key: TableKey, directory: Union[str, Path, None] = None, *, check_stale: bool = True) -> dict:
    """Read and verify one table record; raise :class:`TableError` when missing, corrupt or stale."""
    directory = Path(directory) if directory is not None else SHIPPED_DIR
    path = directory / key.filename
    regen = f"Regenerate it with: {key.fit_command()}" + ("" if directory == SHIPPED_DIR else f" --out {directory}")
    if not path.is_file():
        have = sorted(p.name for p in directory.glob(f"{key.function}-*.json")) if directory.is_dir() else []
        raise TableError(
            f"no fitted table for {key.function!r} with N={key.n_basis}, T={key.timesteps}, recipe "
            f"{key.recipe!r}{'' if key.decay else ', no decay'}: {path} does not exist. "
            f"Tables present for {key.function!r}: {have or 'none'}. {regen}"
        )
    try:
        record = _load_record(str(path), path.stat().st_mtime_ns)
    except TableError as exc:
        raise TableError(f"{exc}. {regen}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise TableError(f"{path} is not an mbe neuron table (corrupt). {regen}")
    if record.get("sha256") != _digest(record):
        raise TableError(f"{path} fails its SHA-256 check: the file was altered or damaged (corrupt). {regen}")
    if check_stale:
        problems = []
        if record.get("format_version") != FORMAT_VERSION:
            problems.append(f"format version {record.get('format_version')} != {FORMAT_VERSION}")
        if record.get("recipe") != _recipe_record(key):
            problems.append(f"recipe {key.recipe!r} changed since the table was fitted")
        try:
            spec_domain = list(get_function(key.function).domain)
        except ValueError:
            spec_domain = record.get("domain")
        if record.get("domain") != spec_domain:
            problems.append(f"domain {record.get('domain')} != registry domain {spec_domain}")
        if problems:
            raise TableError(f"{path} is stale: {'; '.join(problems)}. {regen}")
    return record


def get_neuron(
    function: str,
    n_basis: Optional[int] = None,
    timesteps: int = 16,
    *,
    recipe: str = "best",
    decay: bool = True,
    device=None,
    dtype=None,
    directory=None,
    backend: str = "auto",
) -> MBENeuron:
    """A ready MBE neuron from a fitted table (no refit; milliseconds).

    Args:
        function: registry name, e.g. ``"gelu"``.
        n_basis: N; defaults to the registry's paper value.
        timesteps: T.
        recipe: ``"best"`` or ``"paper"``.
        decay: ``False`` for the no-decay ablation tables.
        device, dtype: where the neuron's buffers go.
        directory: table folder (default: the tables shipped in the package).
    Raises:
        TableError: the table is missing, stale or corrupt (the message gives the fix).
    """
    spec = get_function(function)
    n_basis = spec.n_basis if n_basis is None else n_basis
    validate_counts(n_basis, timesteps)
    get_recipe(recipe)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    key = TableKey(function, n_basis, timesteps, recipe, bool(decay))
    record = load_table(key, directory)
    params = MBEParameters.from_dict(record["params"])
    neuron = MBENeuron(
        params, record["timesteps"], function=record["function"], domain=record["domain"], backend=backend
    )
    if device is not None or dtype is not None:
        neuron = neuron.to(device=device, dtype=dtype)
    return neuron


def fit_tables(keys: Iterable[TableKey], directory=None, *, seed: int = 0, progress: bool = True) -> list[dict]:
    """Fit and save the given tables; returns one summary row per table (for timing reports)."""
    from .fitting import fit_neuron

    keys = list(keys)
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(keys), desc="fitting neuron tables", unit="table")
    start = time.perf_counter()
    for key in keys:
        if bar is not None:
            bar.set_postfix_str(key.filename)
        res = fit_neuron(
            key.function, n_basis=key.n_basis, timesteps=key.timesteps, recipe=key.recipe, seed=seed, decay=key.decay
        )
        path = save_table(res, directory)
        rows.append(
            {
                "table": path.name,
                "function": key.function,
                "n_basis": key.n_basis,
                "timesteps": key.timesteps,
                "recipe": key.recipe,
                "decay": key.decay,
                "mse": res.mse,
                "seconds": res.seconds,
            }
        )
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    total = time.perf_counter() - start
    for row in rows:
        row["total_seconds"] = total
    return rows


def verify_tables(directory=None) -> list[tuple[str, str]]:
    """Check every shipped key: ``[(filename, "ok" | error message)]``."""
    out = []
    for key in shipped_table_keys():
        try:
            load_table(key, directory)
            out.append((key.filename, "ok"))
        except TableError as exc:
            out.append((key.filename, str(exc)))
    return out


# --------------------------------------------------------------------------------------------------------
# fits on other domains (calibrated ones), made on demand and cached on disk
# --------------------------------------------------------------------------------------------------------
#: ``MBE_QUICK_FITS=1`` (the fast test tier): one restart and a short schedule for on-demand fits
QUICK_FIT = {"restarts": 1, "epochs": 60, "ramp_steps": 60, "samples": 4000}


def fit_cache_dir() -> Path:
    """Where fits on non-default domains are cached: ``$MBE_CACHE_DIR`` or ``~/.cache/mbe/fits``."""
    import os

    root = os.environ.get("MBE_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mbe"
    return Path(root) / "fits"


#: fits for T above this start from the fit at :func:`refinement_anchor` (T) instead of from scratch
REFINE_ABOVE_T = 16


def refinement_anchor(timesteps: int) -> Optional[int]:
    """The lower T whose neuron starts a fit at ``timesteps`` (``max(16, T // 2)`` above
    :data:`REFINE_ABOVE_T`, else ``None``: fitted from scratch).

    Above T=16 a fitted neuron's error is the limit of its N ramps, the same at T=16 and T=32, so two
    independent fits differ only by optimisation noise, which made the error at T=32 exceed T=16's on 12 of
    the 32 tiny support-matrix models. Starting from the lower T's parameters (re-solved readout included),
    the fit keeps that start unless it improves on it, so more T does not cost accuracy on the fit's data."""
    return max(REFINE_ABOVE_T, timesteps // 2) if timesteps > REFINE_ABOVE_T else None


def neuron_for(function: str, n_basis: Optional[int] = None, timesteps: int = 16) -> MBENeuron:
    """The shipped table for ``(function, N, T)`` when the package has one, else a neuron fitted on the
    function's registry domain now (with a progress bar) and cached on disk (:func:`fitted_on_domain`), so
    every T in [1, 64] and every N work; above T=16 the fit starts from the neuron at
    :func:`refinement_anchor` (T). A shipped table that is corrupt or stale still raises
    :class:`TableError`: only a missing one is fitted.

    ``identity`` (the encoder of every spiking product) is the closed-form
    :func:`mbe.neuron.binary_identity` on [-1, 1] for every N and T: 4-8x more accurate than the shipped
    fitted identity tables, which stay available through :func:`get_neuron` (Table X, the approximation
    notebook)."""
    spec = get_function(function)
    n_basis = spec.n_basis if n_basis is None else n_basis
    validate_counts(n_basis, timesteps)
    if function == "identity":
        from .neuron import binary_identity

        return binary_identity(n_basis, timesteps, spec.domain)
    if (SHIPPED_DIR / TableKey(function, n_basis, timesteps).filename).is_file():
        return get_neuron(function, n_basis=n_basis, timesteps=timesteps)
    return refined_fit(
        function, spec.domain, n_basis, timesteps, lambda t: neuron_for(function, n_basis, t), progress=True
    )


def refined_fit(
    function: str,
    domain,
    n_basis: int,
    timesteps: int,
    anchor_at: Callable[[int], MBENeuron],
    *,
    density=None,
    progress: bool = False,
    quick: bool = False,
) -> MBENeuron:
    """The neuron for ``function`` on ``domain`` at ``timesteps``: :func:`fitted_on_domain`, and above
    :data:`REFINE_ABOVE_T` started from ``anchor_at(refinement_anchor(T))`` (the same neuron's resolution at the
    lower T, e.g. a shipped table, a calibrated group's fit or a tail's) and kept only where clearly more accurate
    than that start (:func:`better_of`). The one rule behind :func:`neuron_for` and the conversion's fitted and
    tail neurons, so that more T never costs accuracy on the fit's data."""
    anchor = refinement_anchor(timesteps)
    init = None if anchor is None else anchor_at(anchor)
    fitted = fitted_on_domain(
        function, domain, n_basis, timesteps, progress=progress, density=density, init=init, quick=quick
    )
    return fitted if init is None else better_of(fitted, init, function, domain, density)


def fit_objective(neuron: MBENeuron, function: str, domain, density=None) -> float:
    """The MSE a fit of ``function`` on ``domain`` minimises (:func:`mbe.fitting.targets.training_samples`:
    the recipe's sample, seed 0, weighted by ``density`` when given), for ``neuron`` run at its own T."""
    from .fitting.targets import training_samples

    spec = get_function(function)
    _, x, y = training_samples(function, spec.fn, validate_domain(domain), get_recipe("best"), 0, density)
    with torch.no_grad():
        out, _ = neuron.evaluate(x.float())
    return float(((out.output.double() - y) ** 2).mean())


#: a fit at T replaces its lower-T anchor (:func:`better_of`) only where it cuts the fit's MSE to at most this share
#: of the anchor's (its RMS error by about 5 %): the fit runs more steps, and a readout's time grows with them (GELU
#: N=16: 4.6 ms per call at T=16, 12.2 ms at T=32 in vit-mnist), while above T=16 a smooth function's fit is limited
#: by its N ramps, not by T. Measured at T=32 against the T=16 anchor (MSE ratios): vit-mnist GELU 1.000, softmax's
#: exp2 1.000, rsqrt 0.952, reciprocal 0.940; minilm-tweets GELU 0.999 and 1.000, tanh 1.000; gpt2-pydocs tanh-GELU
#: 0.885 (kept)
KEEP_FIT_RATIO = 0.9


def better_of(fitted: MBENeuron, anchor: MBENeuron, function: str, domain, density=None) -> MBENeuron:
    """``fitted`` (at T) where it is clearly more accurate on the fit's objective (:func:`fit_objective`) than
    ``anchor`` (the same function's neuron at a lower T): at most :data:`KEEP_FIT_RATIO` of the anchor's MSE.
    Otherwise ``anchor``: an operator at T runs a neuron of fewer steps for its own steps and leaves the rest silent
    (:func:`mbe.ops.encoding.pick_neuron`), so it computes exactly what it computes at the lower T, at the lower T's
    cost. Either way a conversion at T is never less accurate on the neurons' data than at the anchor T. The warm
    start alone does not guarantee that: the start is the anchor's parameters run for all T steps, a different
    function from the anchor at its own T."""
    if anchor.timesteps >= fitted.timesteps:
        raise ValueError(
            f"better_of: the anchor must run fewer steps than T={fitted.timesteps}, got {anchor.timesteps}"
        )
    if fit_objective(fitted, function, domain, density) <= KEEP_FIT_RATIO * fit_objective(
        anchor, function, domain, density
    ):
        return fitted
    return anchor


def fitted_on_domain(
    function: str,
    domain,
    n_basis: Optional[int] = None,
    timesteps: int = 16,
    *,
    recipe: str = "best",
    progress: bool = False,
    density=None,
    init: Optional[MBENeuron] = None,
    quick: bool = False,
) -> MBENeuron:
    """A neuron for ``function`` fitted on ``domain`` (``recipe``, seed 0), from the fit cache when it holds
    one (same function, domain, N, T, recipe, density, start, hash intact), else fitted now (seconds) and cached.

    ``init``: a neuron (same N) whose parameters start the fit (:func:`mbe.fitting.fit_neuron`); the cache tells
    starts apart by a digest of their parameters.

    ``density``: a sample of the inputs the neuron will see; the fit weights its error by their density
    (:func:`mbe.fitting.fit_neuron`). The cache tells densities apart by a digest of 257 quantiles.

    A corrupt cache entry is refitted and overwritten, never trusted. ``quick=True`` or ``MBE_QUICK_FITS=1`` fits
    with :data:`QUICK_FIT` instead (seconds less, a little less accurate; cached apart), as the fast test tier does.
    """
    import os

    from .fitting import fit_neuron

    spec = get_function(function)
    n_basis = spec.n_basis if n_basis is None else n_basis
    validate_counts(n_basis, timesteps)
    lo, hi = validate_domain(domain)
    quick = quick or os.environ.get("MBE_QUICK_FITS", "0") == "1"
    rec = get_recipe(recipe).with_overrides(**(QUICK_FIT if quick else {}))
    key = TableKey(function, n_basis, timesteps, recipe)
    tag = "" if density is None else "_density-" + _density_digest(density, (lo, hi))
    if init is not None:
        tag += "_init-" + _params_digest(init.parameters_record())
    folder = fit_cache_dir() / ("quick" if quick else "") / f"{function}_{lo:.9g}_{hi:.9g}{tag}"
    path = folder / key.filename
    if path.is_file():
        try:
            record = load_table(key, folder, check_stale=False)
            if record.get("domain") == [lo, hi] and record.get("recipe") == rec.as_dict():
                params = MBEParameters.from_dict(record["params"])
                return MBENeuron(params, record["timesteps"], function=function, domain=(lo, hi))
        except (TableError, KeyError, TypeError, ValueError):
            pass  # corrupt or foreign: refit below and overwrite
    result = fit_neuron(
        function,
        domain=(lo, hi),
        n_basis=n_basis,
        timesteps=timesteps,
        recipe=rec,
        progress=progress,
        density=density,
        init=None if init is None else init.parameters_record(),
    )
    try:
        save_table(result, folder)
    except OSError:
        pass  # a read-only cache only costs the refit next time
    return result.neuron


def _params_digest(params: MBEParameters) -> str:
    """12 hex digits of SHA-256 over a neuron's parameters (float32, field by field)."""
    h = hashlib.sha256()
    for name, value in sorted(vars(params).items()):  # dataclass fields, all tensors
        h.update(name.encode() + value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _density_digest(density, domain) -> str:
    """12 hex digits of SHA-256 over 257 quantiles (float32) of the density sample inside ``domain``."""
    from .fitting.targets import check_density

    d = check_density(density, domain)
    q = torch.quantile(d, torch.linspace(0, 1, 257, dtype=torch.float64)).float().numpy().tobytes()
    return hashlib.sha256(q + str(d.numel()).encode()).hexdigest()[:12]
