"""The tutorial's widgets in a real JupyterLab: start JupyterLab on 127.0.0.1, open the tutorial in
headless Chromium (Debian's chromium + chromium-driver), run all cells, move the T control and check the
plot changed. Screenshots go to figures/tutorial_widgets_before.png and _after.png.

Skipped, with the reason, where Chromium or its driver is missing (``.ci/run`` installs them with apt).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    pytest.importorskip("selenium")
    work = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", work)
    port, token = _free_port(), "mbe-test"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True",
        ]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg")),
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield f"http://127.0.0.1:{port}/lab/tree/00_tutorial.ipynb?token={token}"
    proc.terminate()
    proc.wait(timeout=30)


def _plot_src(driver) -> str:
    """The image inside the widgets' output area ('' until it is drawn)."""
    return driver.execute_script(
        "const imgs = document.querySelectorAll('.widget-output img, .jupyter-widgets-output-area img');"
        "return imgs.length ? imgs[imgs.length - 1].src : '';"
    )


def test_moving_a_control_redraws_the_plot(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select, WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(lab)
        wait = WebDriverWait(driver, 180, poll_frequency=1)
        # the notebook panel is open and its kernel is ready, then run every cell
        wait.until(
            lambda d: d.execute_script(
                "const app = window.jupyterapp; const w = app && app.shell.currentWidget;"
                "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
                " && w.sessionContext.session.kernel.status === 'idle');"
            )
        )
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        wait.until(lambda d: _plot_src(d) != "")
        before = _plot_src(driver)
        figures = ROOT / "figures"
        driver.save_screenshot(str(figures / "tutorial_widgets_before.png"))
        t_select = wait.until(
            lambda d: next(
                (
                    el
                    for el in d.find_elements("css selector", ".widget-dropdown")
                    if el.find_element("css selector", "label").text.strip() == "T"
                ),
                None,
            )
        )
        Select(t_select.find_element("css selector", "select")).select_by_visible_text("4")
        wait.until(lambda d: _plot_src(d) not in ("", before))
        after = _plot_src(driver)
        driver.execute_script(
            "document.querySelectorAll('.widget-output, .jupyter-widgets-output-area')"
            ".forEach(e => e.scrollIntoView());"
        )
        driver.save_screenshot(str(figures / "tutorial_widgets_after.png"))
        assert after != before
    finally:
        driver.quit()
