"""The report and the live dashboard, opened in a real headless Chromium (Debian's package,
driven by Playwright). Screenshots go to pytest's temporary folder."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import optuna
import pytest

from tests.helpers import tiny_study_dict
from tuner import storage as storage_lib
from tuner.api import run_study
from tuner.report.html import build_report, write_report
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
# Every Plotly figure on the page: [legend box, colour-bar boxes, visible axes without a title].
FIGURE_LAYOUT = """() => [...document.querySelectorAll('div.js-plotly-plot')].map(d => {
    const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const legend = d.querySelector('g.legend');
    // Axes drawn with ticks only (a parcoords figure has no axes to title); Plotly fills an
    // empty title with a "Click to enter ..." placeholder, which counts as no title.
    const cartesian = !d._fullData.some(t => t.type === 'parcoords');
    const used = [...d.querySelectorAll(cartesian ? 'g.cartesianlayer > g.subplot' : 'none')]
        .flatMap(g => ([...g.classList].find(c => /^x\\d*y\\d*$/.test(c)) || '').match(/[xy]\\d*/g) || []);
    const axes = used.map(id => [id, d._fullLayout[id[0] + 'axis' + id.slice(1)]]).filter(([id, a]) => a && a.visible && d.querySelector(`g.${id}tick`));
    const titled = a => a.title && a.title.text && !a.title.text.startsWith('Click to enter');
    return {
        id: d.id,
        legend: legend ? box(legend.querySelector('rect.bg') || legend) : null,
        colorbars: [...d.querySelectorAll('g.colorbar')].map(box),
        untitled: axes.filter(([, a]) => !titled(a)).map(([k]) => k),
    };
})"""


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_figures_are_readable(page):
    """No legend box intersects a colour bar, every visible axis has a title."""
    for fig in page.evaluate(FIGURE_LAYOUT):
        assert fig["untitled"] == [], fig
        if fig["legend"]:
            for bar in fig["colorbars"]:
                assert not overlaps(fig["legend"], bar), fig


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
    run_study(validate_study(tiny_study_dict("real", budget={"n_trials": 2})), storage_url=url)
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
        kwargs: dict[str, Any] = {
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
    lead = page.locator("#summary-lead")
    if kind != "multi-objective":  # a single-objective study opens with the best value and the gain
        text = lead.inner_text()
        assert "val ELBO" in text and "nats" in text and "gain" in text
        # The first figure outside the summary (whose own small figure is the best β schedule).
        first_figure = page.evaluate(
            "() => [...document.querySelectorAll('div.js-plotly-plot')].find(d => !d.closest('.summary'))"
            ".getBoundingClientRect().top"
        )
        box = lead.bounding_box()
        assert box["y"] + box["height"] <= first_figure
    if kind == "real-with-best-views":  # run_study's baseline trial 0: the gain is a number of nats
        assert "baseline (trial 0" in lead.inner_text()
    check_figures_are_readable(page)
    page.screenshot(path=str(tmp_path / f"report-{kind}.png"), full_page=True)
    page.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(real_study):
    """`tuner dashboard` on the real study; yields its base URL."""
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
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def open_trial_page(browser, base):
    page, errors = open_page(browser, f"{base}/dashboard/studies/1/trials")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].some(i => i.src.includes('/artifacts/') && i.naturalWidth > 0)",
        timeout=30_000,
    )
    return page, errors


def test_dashboard_shows_studies_vae_views_and_trial_artifacts(browser, tmp_path, dashboard):
    page, errors = open_page(browser, f"{dashboard}/dashboard/")
    page.wait_for_selector("text=real", timeout=30_000)
    page.goto(f"{dashboard}/dashboard/studies/1")
    page.wait_for_selector("[id='user-defined-plot:vae-rate-distortion'] svg.main-svg", timeout=30_000)
    for view in ("vae-rate-distortion-curves", "vae-beta-schedules", "vae-beta-landscape", "vae-best-reconstructions"):
        assert page.locator(f"[id='user-defined-plot:{view}'] svg.main-svg").count() >= 1
    assert page.locator("[id='user-defined-plot:vae-elbo-curves']").count() == 0  # the dashboard has its own
    check_figures_are_readable(page)
    page.screenshot(path=str(tmp_path / "dashboard-study.png"), full_page=True)
    page.close()
    page, trial_errors = open_trial_page(browser, dashboard)
    page.screenshot(path=str(tmp_path / "dashboard-trial.png"), full_page=True)
    assert errors == [] and trial_errors == []


def test_dashboard_trial_page_fits_a_1400_px_window(browser, dashboard):
    page, _ = open_trial_page(browser, dashboard)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    page.close()
    assert width <= 1400, f"the trial page is {width} px wide in a 1,400 px window: it scrolls sideways"


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
        assert proc.stdout is not None
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


def test_multi_objective_report_shows_the_reconstructions_of_a_picked_point(browser, tmp_path):
    """Clicking a trial of the rate-distortion plane shows the picture that trial saved."""
    from optuna.artifacts import upload_artifact
    from PIL import Image

    from tuner.search.records import CONFIG_ATTR, RECON_ATTR, curve_key

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    store = storage_lib.artifact_store(url)
    study = optuna.create_study(study_name="front", storage=url, directions=["minimize", "minimize"])
    for i, (distortion, rate) in enumerate([(90.0, 5.0), (80.0, 12.0), (70.0, 25.0), (95.0, 20.0)]):
        trial = study.ask({"max_beta": optuna.distributions.FloatDistribution(0.1, 10, log=True)})
        picture = tmp_path / f"recon-{i}.png"
        Image.new("L", (16, 8), 40 * i).save(picture)
        trial.set_user_attr(
            RECON_ATTR, upload_artifact(artifact_store=store, file_path=str(picture), study_or_trial=trial)
        )
        trial.set_user_attr(CONFIG_ATTR, {"schedule": {"max_beta": trial.params["max_beta"]}})
        trial.set_user_attr(
            curve_key(1), {"epoch": 1, "val_recon": distortion, "val_kl": rate, "val_elbo": -(distortion + rate)}
        )
        study.tell(trial, [distortion, rate])
    path = write_report(build_report(study, url, store, with_best=False), tmp_path / "front.html")
    page, errors = open_page(browser, path.as_uri(), wait_ms=500)
    picker = page.locator("div.picker")
    assert picker.count() == 1 and picker.locator("img").get_attribute("hidden") is not None
    page.evaluate(
        "() => document.querySelector('div.picker').previousElementSibling.querySelector('.js-plotly-plot')"
        ".emit('plotly_click', {points: [{customdata: 2}]})"
    )
    image = picker.locator("img")
    assert image.get_attribute("hidden") is None
    assert (image.get_attribute("src") or "").startswith("data:image/png;base64,")
    assert "Trial 2" in picker.locator(".caption").inner_text()
    assert page.evaluate("() => document.querySelector('div.picker img').naturalWidth") == 16
    assert errors == []
