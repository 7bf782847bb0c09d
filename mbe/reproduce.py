"""Run the notebook suite with papermill: ``python -m mbe reproduce --profile {smoke,default,paper}``.

Profiles: ``smoke`` (minutes; the tests run it), ``default`` (the embedded models and data, offline),
``paper`` (the paper's hub models and data sets; needs a network, checked first, and realistically a GPU;
or, with ``models_dir`` and ``data_dir`` (``--models``/``--data``), local copies in the layouts of
:mod:`mbe.zoo.local`, checked first, offline).

After the notebooks, ``results/REPORT.md`` is rebuilt from the CSVs (:mod:`mbe.report`).

Each notebook in ``notebooks/`` (sorted by name) is executed with its ``profile``, ``results_dir`` and
``figures_dir`` parameters; executed copies go to ``<results>/executed/``. A failing notebook stops the
run with its name and the failing cell.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

PROFILES = ("smoke", "default", "paper")


class NotebookFailed(RuntimeError):
    pass


class HubUnreachable(RuntimeError):
    """The ``paper`` profile cannot reach the Hugging Face hub."""


class LocalCopiesMissing(RuntimeError):
    """The ``paper`` profile's local copies (``--models``/``--data``) lack files."""


def _code(book: Path, parameters: dict | None = None) -> str:
    """The code cells of ``book``, its parameters cell's assignments of ``parameters`` given as they will run."""
    parameters = parameters or {}
    parts = []
    for cell in json.loads(book.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            lines = [
                f"{name} = {parameters[name]!r}"
                if "=" in line and (name := line.split("=")[0].strip()) in parameters
                else line
                for line in lines
            ]
        parts.append("\n".join(lines))
    return "\n".join(parts)


def _check_local(books: list[Path], models_dir: Path, data_dir: Path, parameters: dict | None = None) -> bool:
    """Check the local copies of every hub model the notebooks in ``books`` name (with the ``parameters`` given:
    ``--param paper_models=[...]`` names notebook 03's models); returns whether they are the test fixture
    (:mod:`mbe.zoo.fixtures`). Raises :class:`LocalCopiesMissing` listing every missing path."""
    from .zoo import hub, local

    code = "\n".join(_code(book, parameters) for book in books)
    names = [n for n in hub.HUB if f'"{n}"' in code or f"'{n}'" in code]
    lacking = local.missing(names, models_dir, data_dir)
    if lacking:
        raise LocalCopiesMissing(
            f"the paper profile reads local copies: models from {models_dir}, data from {data_dir}. Missing: "
            + "; ".join(f"{name}: {' | '.join(paths)}" for name, paths in lacking.items())
            + ". Layouts: README, 'Local copies of the paper's models and data' (or mbe.zoo.local's docstring)"
        )
    return local.is_fixture(models_dir)


def _declares(book: Path, name: str) -> bool:
    """Whether ``book``'s parameters cell (tagged ``parameters``) assigns ``name``."""
    for cell in json.loads(book.read_text(encoding="utf-8"))["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return any(line.split("=")[0].strip() == name for line in "".join(cell["source"]).splitlines())
    return False


def run_notebooks(
    profile: str = "default",
    notebooks_dir="notebooks",
    results_dir="results",
    figures_dir="figures",
    only: list[str] | None = None,
    progress: bool = True,
    models_dir=None,
    data_dir=None,
    parameters: dict | None = None,
) -> list[dict]:
    """Execute the suite; returns one row per notebook (name, seconds, fixture).

    ``parameters``: papermill parameters (``{"timesteps": [16, 8]}``) given to every notebook whose parameters
    cell assigns them (``ValueError`` for a name no selected notebook takes, or one set by its own option).

    ``models_dir`` and ``data_dir`` (``paper`` profile only, both or neither): read the paper's models and data
    from local copies instead of the hub (layouts: :mod:`mbe.zoo.local`); passed, as absolute paths, to the
    notebooks that take them. ``fixture`` is true for those notebooks when ``models_dir`` is the test fixture
    (:func:`mbe.zoo.fixtures.write_paper_fixture`), whose numbers are not results."""
    import papermill as pm
    from tqdm.auto import tqdm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    local = models_dir is not None or data_dir is not None
    if local and profile != "paper":
        raise ValueError(f"models_dir/data_dir (--models/--data) are for the paper profile, not {profile!r}")
    if local and (models_dir is None or data_dir is None):
        raise ValueError("local copies need both models_dir and data_dir (--models and --data)")
    nb_dir = Path(notebooks_dir)
    books = sorted(p for p in nb_dir.glob("*.ipynb") if not only or any(p.name.startswith(o) for o in only))
    if not books:
        raise FileNotFoundError(
            f"no notebooks found in {nb_dir.resolve()} (run from the repository root or pass --notebooks)"
        )
    parameters = dict(parameters or {})
    reserved = sorted(set(parameters) & {"profile", "results_dir", "figures_dir", "models_dir", "data_dir"})
    if reserved:
        raise ValueError(f"parameters {reserved} have their own options (--profile, --results, --figures, ...)")
    unknown = sorted(k for k in parameters if not any(_declares(book, k) for book in books))
    if unknown:
        raise ValueError(f"no selected notebook takes the parameter(s) {unknown}; see their parameters cells")
    fixture = False
    if local:
        models_dir, data_dir = Path(models_dir).resolve(), Path(data_dir).resolve()
        fixture = _check_local(books, models_dir, data_dir, parameters)
    elif profile == "paper":
        from .zoo import hub

        missing = hub.unreachable()
        if missing:
            raise HubUnreachable(
                "the paper profile runs the paper's own models and data from the Hugging Face hub, and needs a "
                "network (realistically a GPU too). Unreachable: "
                + "; ".join(missing.values())
                + ". Local copies work offline (--models DIR --data DIR). The default profile runs everything "
                "offline on the embedded stand-ins: python -m mbe reproduce --profile default"
            )
    results, figures = Path(results_dir).resolve(), Path(figures_dir).resolve()
    executed = results / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    rows = []
    for book in tqdm(books, desc=f"notebooks ({profile})", unit="nb", disable=not progress):
        start = time.perf_counter()
        # relative to the notebook's folder, so executed copies carry no machine-specific paths
        given = {
            "profile": profile,
            "results_dir": os.path.relpath(results, nb_dir.resolve()),
            "figures_dir": os.path.relpath(figures, nb_dir.resolve()),
            **{k: v for k, v in parameters.items() if _declares(book, k)},
        }
        takes_local = local and _declares(book, "models_dir")
        if takes_local:  # the notebooks that run the paper's models (03-05)
            given.update(models_dir=str(models_dir), data_dir=str(data_dir))
        try:
            pm.execute_notebook(
                str(book),
                os.path.relpath(executed / book.name),
                cwd=str(nb_dir),
                parameters=given,
                progress_bar=False,
                kernel_name="python3",
            )
        except pm.PapermillExecutionError as exc:
            raise NotebookFailed(
                f"{book.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                f"the executed copy with the traceback is {executed / book.name}"
            ) from None
        seconds = round(time.perf_counter() - start, 1)
        rows.append({"notebook": book.name, "seconds": seconds, "fixture": fixture and takes_local})
    return rows


def write_run_report(rows: list[dict], profile: str, results_dir="results") -> Path:
    """Record this run's notebook wall times (merged into ``notebook_times.csv``, with whether each notebook ran
    on the test fixture) and rebuild ``REPORT.md``."""
    import pandas as pd

    from .report import build_report

    results = Path(results_dir)
    times_csv = results / "notebook_times.csv"
    new = pd.DataFrame(rows).assign(profile=profile)
    if times_csv.is_file():
        old = pd.read_csv(times_csv)
        new = pd.concat([old[~old.notebook.isin(new.notebook)], new]).sort_values("notebook")
    if "fixture" in new:  # rows written before the column: not fixture runs
        new["fixture"] = new["fixture"].astype("boolean").fillna(False).astype(bool)
    new.to_csv(times_csv, index=False)
    return build_report(results, profile, new)
