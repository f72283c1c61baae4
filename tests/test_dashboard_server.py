"""The dashboard is read-only by default, can ask for a password, and starts on studies whose
user attributes were damaged or written by someone else."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import subprocess
import sys
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from tests.helpers import free_port
from tuner import storage as storage_lib
from tuner.report.server import dashboard_app
from tuner.testing import synthetic_study


@pytest.fixture
def study_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    synthetic_study(url, name="guarded", n_trials=3)
    return url


def call(app, method, path, body=b"", headers=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["CONTENT_TYPE"] = "application/json"
    environ.update(headers or {})
    setup_testing_defaults(environ)
    status: dict[str, Any] = {}

    def start_response(code, response_headers, exc_info=None):
        status["code"] = int(code.split()[0])
        status["headers"] = dict(response_headers)

    content = b"".join(app(environ, start_response))
    return status["code"], status["headers"], content


def open_app(url, **options):
    storage = storage_lib.open_storage(url, read_only=True)
    return storage, dashboard_app(storage, storage_lib.artifact_store(url), **options)


def test_read_only_by_default(study_url):
    storage, app = open_app(study_url)
    study_id = optuna.load_study(study_name="guarded", storage=study_url)._study_id
    code, _, content = call(app, "GET", "/api/studies")
    assert code == 200 and b"guarded" in content
    running = [t for t in optuna.load_study(study_name="guarded", storage=study_url).trials]
    attempts = [
        ("DELETE", f"/api/studies/{study_id}", b""),
        ("POST", "/api/studies", json.dumps({"study_name": "evil", "directions": ["minimize"]}).encode()),
        ("POST", f"/api/trials/{running[0]._trial_id}/tell", json.dumps({"state": "Complete", "values": [1]}).encode()),
        ("POST", f"/api/trials/{running[0]._trial_id}/user-attrs", json.dumps({"user_attrs": {"x": 1}}).encode()),
        ("PUT", f"/api/studies/{study_id}/note", b"{}"),
        ("PATCH", "/api/anything", b""),
    ]
    for method, path, body in attempts:
        code, headers, content = call(app, method, path, body)
        assert code == 405, (method, path, code)
        assert headers["Allow"] == "GET, HEAD" and b"--allow-writes" in content
    assert optuna.get_all_study_names(study_url) == ["guarded"]
    assert [t.state for t in optuna.load_study(study_name="guarded", storage=study_url).trials] == [
        t.state for t in running
    ]


def test_allow_writes_lets_the_dashboard_delete(study_url):
    _, app = open_app(study_url, allow_writes=True)
    study_id = optuna.load_study(study_name="guarded", storage=study_url)._study_id
    code, _, _ = call(app, "DELETE", f"/api/studies/{study_id}")
    assert code == 204
    assert optuna.get_all_study_names(study_url) == []


def test_basic_auth(study_url):
    _, app = open_app(study_url, auth="ada:s3cret")
    assert call(app, "GET", "/api/studies")[0] == 401
    wrong = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"ada:guess").decode()}
    assert call(app, "GET", "/api/studies", headers=wrong)[0] == 401
    right = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"ada:s3cret").decode()}
    assert call(app, "GET", "/api/studies", headers=right)[0] == 200
    assert call(app, "DELETE", "/api/studies/1", headers=right)[0] == 405  # still read-only


def test_dashboard_starts_on_a_study_with_damaged_attributes(study_url):
    # What a foreign tool or a tampering request leaves behind: wrong types everywhere (written
    # with SQL: Optuna refuses to change finished trials).
    with sqlite3.connect(study_url.removeprefix("sqlite:///")) as db:
        for key, value in (("config", '"not a mapping"'), ("schedule", "[1, 2, 3]"), ("curve/0001", '"garbage"')):
            db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = ?", (value, key))
        db.execute("UPDATE study_user_attributes SET value_json = '42' WHERE key = 'study_config'")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "dashboard", "--storage", study_url, "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not lines or "dashboard for" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "".join(lines)  # the dashboard ended instead of serving
            lines.append(line)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in "".join(lines)
    assert "read-only" in lines[-1]


def test_dashboard_storage_serves_trials_without_their_curve_rows_but_the_last(study_url):
    from tuner.report.dashboard_storage import DashboardStorage, live_attrs, shared_trial_cache
    from tuner.search.records import CURVE_PREFIX

    backend = shared_trial_cache(storage_lib.open_storage(study_url, read_only=True))
    study_id = backend.get_study_id_from_name("guarded")
    served = DashboardStorage(backend)
    full = {t.number: t for t in backend.get_all_trials(study_id, deepcopy=False)}
    for trial in served.get_all_trials(study_id):
        stored = full[trial.number]
        rows = sorted(k for k in stored.user_attrs if k.startswith(CURVE_PREFIX))
        kept = {k: v for k, v in stored.user_attrs.items() if not k.startswith(CURVE_PREFIX) or k == rows[-1]}
        assert trial.user_attrs == kept and len(rows) > 1
        assert (trial.params, trial.values, trial.intermediate_values) == (
            stored.params,
            stored.values,
            stored.intermediate_values,
        )
        assert len([k for k in stored.user_attrs if k.startswith(CURVE_PREFIX)]) == len(rows)  # backend untouched
    assert served.get_best_trial(study_id).user_attrs == next(
        t.user_attrs for t in served.get_all_trials(study_id) if t.number == backend.get_best_trial(study_id).number
    )
    assert served.get_study_directions(study_id) == backend.get_study_directions(study_id)
    code, _, content = call(
        dashboard_app(backend, storage_lib.artifact_store(study_url)), "GET", f"/api/studies/{study_id}"
    )
    assert code == 200 and b"curve/0001" not in content and b"val_elbo" in content
    attrs = {"dashboard:plot_data:v:0": "{", "dashboard:plot_data:v:1": "", "note": ""}
    assert live_attrs(attrs) == {"dashboard:plot_data:v:0": "{", "note": ""}
