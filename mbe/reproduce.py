"""Run the notebook suite with papermill: ``python -m mbe reproduce --profile {smoke,default,paper}``.

Profiles: ``smoke`` (minutes; the tests run it), ``default`` (the embedded models and data, offline),
``paper`` (the paper's hub models and data sets; needs a network, checked first, and realistically a GPU).

After the notebooks, ``results/REPORT.md`` is rebuilt from the CSVs (:mod:`mbe.report`).

Each notebook in ``notebooks/`` (sorted by name) is executed with its ``profile``, ``results_dir`` and
``figures_dir`` parameters; executed copies go to ``<results>/executed/``. A failing notebook stops the
run with its name and the failing cell.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROFILES = ("smoke", "default", "paper")


class NotebookFailed(RuntimeError):
    pass


class HubUnreachable(RuntimeError):
    """The ``paper`` profile cannot reach the Hugging Face hub."""


def run_notebooks(
    profile: str = "default",
    notebooks_dir="notebooks",
    results_dir="results",
    figures_dir="figures",
    only: list[str] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Execute the suite; returns one row per notebook (name, seconds)."""
    import papermill as pm
    from tqdm.auto import tqdm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if profile == "paper":
        from .zoo import hub

        missing = hub.unreachable()
        if missing:
            raise HubUnreachable(
                "the paper profile runs the paper's own models and data from the Hugging Face hub, and needs a "
                "network (realistically a GPU too). Unreachable: "
                + "; ".join(missing.values())
                + ". The default profile runs everything offline on the embedded stand-ins: "
                "python -m mbe reproduce --profile default"
            )
    nb_dir = Path(notebooks_dir)
    books = sorted(p for p in nb_dir.glob("*.ipynb") if not only or any(p.name.startswith(o) for o in only))
    if not books:
        raise FileNotFoundError(
            f"no notebooks found in {nb_dir.resolve()} (run from the repository root or pass --notebooks)"
        )
    results, figures = Path(results_dir).resolve(), Path(figures_dir).resolve()
    executed = results / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    rows = []
    for book in tqdm(books, desc=f"notebooks ({profile})", unit="nb", disable=not progress):
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(book),
                os.path.relpath(executed / book.name),
                cwd=str(nb_dir),
                # relative to the notebook's folder, so executed copies carry no machine-specific paths
                parameters={
                    "profile": profile,
                    "results_dir": os.path.relpath(results, nb_dir.resolve()),
                    "figures_dir": os.path.relpath(figures, nb_dir.resolve()),
                },
                progress_bar=False,
                kernel_name="python3",
            )
        except pm.PapermillExecutionError as exc:
            raise NotebookFailed(
                f"{book.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                f"the executed copy with the traceback is {executed / book.name}"
            ) from None
        rows.append({"notebook": book.name, "seconds": round(time.perf_counter() - start, 1)})
    return rows


def write_run_report(rows: list[dict], profile: str, results_dir="results") -> Path:
    """Record this run's notebook wall times (merged into ``notebook_times.csv``) and rebuild ``REPORT.md``."""
    import pandas as pd

    from .report import build_report

    results = Path(results_dir)
    times_csv = results / "notebook_times.csv"
    new = pd.DataFrame(rows).assign(profile=profile)
    if times_csv.is_file():
        old = pd.read_csv(times_csv)
        new = pd.concat([old[~old.notebook.isin(new.notebook)], new]).sort_values("notebook")
    new.to_csv(times_csv, index=False)
    return build_report(results, profile, new)
