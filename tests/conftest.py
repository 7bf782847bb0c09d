"""Test tiers.

- ``pytest -m "not slow"``: the fast tier (about 150 s on 2 cores), to run after every change. It runs the
  neurons' eager path (``MBE_COMPILE=0``): ``torch.compile`` costs about a minute of compiling per process
  on 2 cores, and the compiled path is proven bit-identical to the eager one by a slow test. Neurons fitted
  on calibrated domains use one restart and a short schedule (``MBE_QUICK_FITS=1``; cached on disk apart
  from full fits, so a second run fits nothing).
- ``pytest``: everything (the README's test command and what ``.ci/run`` runs): notebooks under papermill,
  the compiled path, the real zoo models, long fits, the benchmark harness and the browser test.

Tests that use the ``smoke_run`` fixture (the whole notebook suite) are marked ``slow`` here; the others
carry ``@pytest.mark.slow`` (or a module-level ``pytestmark``) in their files.
"""

import os

import pytest


def _fast_tier(config) -> bool:
    expr = (config.getoption("markexpr", "") or "").replace(" ", "")
    return "notslow" in expr


def pytest_configure(config):
    if _fast_tier(config):
        os.environ.setdefault("MBE_COMPILE", "0")
        os.environ.setdefault("MBE_QUICK_FITS", "1")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
