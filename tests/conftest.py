"""Test tiers.

- ``pytest -m "not slow"``: the fast tier (about 150 s on 2 cores), to run after every change.
- ``pytest``: everything (the README's test command and what ``.ci/run`` runs): the fast tier's tests, run as in
  the fast tier, plus the slow ones: notebooks under papermill, the compiled path, the real zoo models, long fits,
  the benchmark harness and the browser test.

Where the environment does not set them:

- every test runs the neurons' eager path (``MBE_COMPILE=0``) unless it turns compiling on itself. On 2 cores
  ``torch.compile`` traces and compiles each neuron shape in minutes (the neuron's ``N x T`` loop is unrolled
  into its graph), which made the whole suite outlast CI's 90 minutes. The compiled path is proven bit-identical
  to the eager one by the tests that turn it on: neurons (``tests/test_neuron.py``), ladders
  (``test_ladder.py``), tables (``test_lookup.py``), operators (``test_ops.py``), a whole zoo model
  (``test_zoo.py``) and the benchmark harness (``test_benchmarks.py``);
- tests not marked ``slow`` fit neurons on calibrated domains with one restart and a short schedule
  (``MBE_QUICK_FITS=1``; cached on disk apart from full fits, so a second run fits nothing).

Tests that use the ``smoke_run`` fixture (the whole notebook suite) are marked ``slow`` here; the others
carry ``@pytest.mark.slow`` (or a module-level ``pytestmark``) in their files.
"""

import os

import pytest

EVERY_TEST_ENV = {"MBE_COMPILE": "0"}
FAST_TIER_ENV = {**EVERY_TEST_ENV, "MBE_QUICK_FITS": "1"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "smoke_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Run a test (its setup, call and teardown, module fixtures it creates included) with :data:`FAST_TIER_ENV`,
    or :data:`EVERY_TEST_ENV` if it is marked ``slow``, where the environment does not set those variables;
    restore the environment after."""
    wanted = EVERY_TEST_ENV if item.get_closest_marker("slow") is not None else FAST_TIER_ENV
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        return (yield)
    finally:
        for name in added:
            os.environ.pop(name, None)
