"""The report and the live dashboard, opened in a real headless Chromium (Debian's package,
driven by Playwright). Screenshots go to pytest's temporary folder."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from tests.helpers import tiny_study_dict
from tuner import storage as storage_lib
from tuner.report.html import build_report, write_report
from tuner.search.study import run_study
from tuner.search.study_file import validate_study
from tuner.testing import synthetic_study

CHROMIUM = os.environ.get("TUNER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (apt-get install chromium)")]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
RENDERED = (
    "() => [...document.querySelectorAll('div.js-plotly-plot')].filter(d => d.querySelector('svg.main-svg')).length"
)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        # A fresh, temporary user-data dir for every launch (Playwright's default).
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield instance
        instance.close()


def open_page(browser, url, wait_ms=0):
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")
    if wait_ms:
        page.wait_for_timeout(wait_ms)
    return page, errors


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    url = f"sqlite:///{folder / 'tuner.db'}"
    run_study(validate_study(tiny_study_dict("real", budget={"n_trials": 2})), url)
    return url


@pytest.mark.parametrize(
    "kind", ["pruned-and-failed", "single-trial", "still-running", "multi-objective", "real-with-best-views"]
)
def test_report_draws_every_figure_without_console_errors(browser, tmp_path, real_study, kind):
    if kind == "real-with-best-views":
        study = optuna.load_study(study_name="real", storage=real_study)
        report = build_report(study, storage_lib.redact(real_study), storage_lib.artifact_store(real_study))
        assert "KL per latent dimension" in [h for h, _ in report.sections]
    else:
        kwargs = {
            "pruned-and-failed": {"n_trials": 20},
            "single-trial": {"n_trials": 1, "fail_every": 0},
            "still-running": {"n_trials": 8, "leave_running": 1},
            "multi-objective": {"n_trials": 8, "multi_objective": True},
        }[kind]
        study = synthetic_study(optuna.storages.InMemoryStorage(), **kwargs)
        report = build_report(study, "sqlite:///x.db", with_best=False)
    path = write_report(report, tmp_path / "report.html")
    page, errors = open_page(browser, path.as_uri())
    page.wait_for_function(f"() => ({RENDERED})() >= {report.n_figures}", timeout=30_000)
    assert page.evaluate(RENDERED) == report.n_figures
    assert errors == []
    page.screenshot(path=str(tmp_path / f"report-{kind}.png"), full_page=True)
    page.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_shows_studies_vae_views_and_trial_artifacts(browser, tmp_path, real_study):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "dashboard", "--storage", real_study, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/meta", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dashboard did not start"
                time.sleep(0.5)
        page, errors = open_page(browser, f"{base}/dashboard/")
        page.wait_for_selector("text=real", timeout=30_000)
        page.goto(f"{base}/dashboard/studies/1")
        page.wait_for_selector("[id='user-defined-plot:vae-rate-distortion'] svg.main-svg", timeout=30_000)
        for view in ("vae-elbo-curves", "vae-beta-schedules", "vae-best-reconstructions"):
            assert page.locator(f"[id='user-defined-plot:{view}'] svg.main-svg").count() >= 1
        page.screenshot(path=str(tmp_path / "dashboard-study.png"), full_page=True)
        page.goto(f"{base}/dashboard/studies/1/trials")
        page.wait_for_function(
            "() => [...document.querySelectorAll('img')].some(i => i.src.includes('/artifacts/') && i.naturalWidth > 0)",
            timeout=30_000,
        )
        page.screenshot(path=str(tmp_path / "dashboard-trial.png"), full_page=True)
        assert errors == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_warns_when_not_on_loopback(tmp_path):
    """Bound to every address, the command says before it serves that anyone who can reach
    it can change the studies; on loopback it says nothing of the kind."""
    from tuner.report.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    synthetic_study(url, n_trials=2)
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner", "dashboard", "--storage", url, "--host", host, "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        head: list[str] = []
        try:
            while not head or "dashboard for" not in head[-1]:  # the warning comes first, if any
                line = proc.stdout.readline()
                assert line, "".join(head)  # the command ended without serving
                head.append(line)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        text = "".join(head)
        assert "dashboard for" in text, text
        assert ("warning: binding to 0.0.0.0" in text and "no authentication" in text) == warned, text
