"""Run the notebook suite with papermill: ``python -m mbe reproduce --profile {smoke,default}``.

Each notebook in ``notebooks/`` (sorted by name) is executed with its ``profile``, ``results_dir`` and
``figures_dir`` parameters; executed copies go to ``<results>/executed/``. A failing notebook stops the
run with its name and the failing cell.
"""
from __future__ import annotations

import os

import time
from pathlib import Path

PROFILES = ("smoke", "default")


class NotebookFailed(RuntimeError):
    pass


def run_notebooks(profile: str = "default", notebooks_dir="notebooks", results_dir="results",
                  figures_dir="figures", only: list[str] | None = None, progress: bool = True) -> list[dict]:
    """Execute the suite; returns one row per notebook (name, seconds)."""
    import papermill as pm
    from tqdm.auto import tqdm

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    nb_dir = Path(notebooks_dir)
    books = sorted(p for p in nb_dir.glob("*.ipynb") if not only or any(p.name.startswith(o) for o in only))
    if not books:
        raise FileNotFoundError(f"no notebooks found in {nb_dir.resolve()} (run from the repository root or pass --notebooks)")
    results, figures = Path(results_dir).resolve(), Path(figures_dir).resolve()
    executed = results / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    rows = []
    for book in tqdm(books, desc=f"notebooks ({profile})", unit="nb", disable=not progress):
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(book), os.path.relpath(executed / book.name), cwd=str(nb_dir),
                # relative to the notebook's folder, so executed copies carry no machine-specific paths
                parameters={"profile": profile, "results_dir": os.path.relpath(results, nb_dir.resolve()),
                            "figures_dir": os.path.relpath(figures, nb_dir.resolve())},
                progress_bar=False, kernel_name="python3",
            )
        except pm.PapermillExecutionError as exc:
            raise NotebookFailed(
                f"{book.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                f"the executed copy with the traceback is {executed / book.name}"
            ) from None
        rows.append({"notebook": book.name, "seconds": round(time.perf_counter() - start, 1)})
    return rows


