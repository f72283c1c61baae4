"""Many workers on one study: real `tuner worker` / `tuner launch` processes on PostgreSQL
(TUNER_TEST_POSTGRES_URL, set by .ci/run) and on the single-machine default (SQLite)."""

import contextlib
import os
import signal
import subprocess
import sys
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import SLOW_TRIALS, start_worker, wait_for_running_trial, write_study
from tuner.search.records import SURPLUS_ATTR, curves

PG_URL = os.environ.get("TUNER_TEST_POSTGRES_URL", "")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set TUNER_TEST_POSTGRES_URL to a PostgreSQL database")


def with_password(url: str, password: str) -> str:
    """The same URL with a password added (trust auth ignores it; outputs must hide it)."""
    head, rest = url.split("://", 1)
    user_host = rest.split("@", 1)
    return f"{head}://{user_host[0]}:{password}@{user_host[1]}" if len(user_host) == 2 else url


def finished(study):
    return study.get_trials(states=[TrialState.COMPLETE, TrialState.PRUNED])


@pytest.fixture
def pg_study_name():
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=PG_URL)


@needs_pg
@pytest.mark.postgres
def test_four_workers_fill_the_budget_exactly(tmp_path, pg_study_name):
    path = write_study(tmp_path, pg_study_name, budget={"n_trials": 6}, training={"epochs": 2})
    url = with_password(PG_URL, "s3cret-pw")
    procs = [start_worker(tmp_path, path, url) for _ in range(4)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    study = optuna.load_study(study_name=pg_study_name, storage=PG_URL)
    done = finished(study)
    assert len(done) == 6
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    for trial in done:  # every epoch a trial ran is stored: all of them, or up to its pruning
        last = 2 if trial.state == TrialState.COMPLETE else trial.user_attrs["pruned_at_epoch"]
        assert [row["epoch"] for row in curves(trial)] == list(range(1, last + 1))
    skipped = [t for t in study.trials if t.user_attrs.get(SURPLUS_ATTR)]
    assert len(skipped) <= 3  # at most one per other worker, and none of them trained
    assert all("s3cret-pw" not in out for out in outputs)


def kill_mid_trial_then_recover(tmp_path, path, url, name, storage_for_check):
    """Worker A is SIGKILLed during a trial; worker B fails it after the grace period,
    retries it with the same parameters, and completes the budget."""
    hb = ["--heartbeat", "1", "--grace", "3"]
    a = start_worker(tmp_path, path, url, *hb)
    victim = wait_for_running_trial(name, storage_for_check)
    a.send_signal(signal.SIGKILL)
    a.wait()
    b = start_worker(tmp_path, path, url, *hb)
    out = b.communicate(timeout=600)[0]
    assert b.returncode == 0, out
    study = optuna.load_study(study_name=name, storage=storage_for_check)
    trials = {t.number: t for t in study.trials}
    assert trials[victim.number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retries and retries[0].params == victim.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(finished(study)) == 2
    assert TrialState.RUNNING not in [t.state for t in study.trials]


@needs_pg
@pytest.mark.postgres
def test_sigkilled_worker_trial_is_retried_postgres(tmp_path, pg_study_name):
    path = write_study(tmp_path, pg_study_name, **SLOW_TRIALS, budget={"n_trials": 2})
    kill_mid_trial_then_recover(tmp_path, path, PG_URL, pg_study_name, PG_URL)


def test_sigkilled_worker_trial_is_retried_sqlite(tmp_path):
    path = write_study(tmp_path, "killed", **SLOW_TRIALS, budget={"n_trials": 2})
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    kill_mid_trial_then_recover(tmp_path, path, url, "killed", url)


def test_launch_two_workers_runs_a_study(tmp_path):
    path = write_study(tmp_path, "launched", budget={"n_trials": 3})
    url = f"sqlite:///{tmp_path / 'storage' / 'tuner.db'}"
    env = {**os.environ, "TUNER_STORAGE": url}
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "launch", str(path), "--workers", "2", "--heartbeat", "2", "--grace", "6"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 workers on study 'launched'" in proc.stdout
    study = optuna.load_study(study_name="launched", storage=url)
    assert len(finished(study)) == 3
    logs = sorted((tmp_path / "storage" / "logs" / "launched").glob("worker-*.log"))
    assert len(logs) == 2 and all("worker done" in log.read_text() for log in logs)


@needs_pg
@pytest.mark.postgres
def test_password_never_printed(tmp_path, pg_study_name):
    url = with_password(PG_URL, "hunter2-secret")
    path = write_study(tmp_path, pg_study_name, budget={"n_trials": 1}, training={"epochs": 1})
    env = {**os.environ, "TUNER_STORAGE": url}
    texts = []
    for args in (["launch", str(path), "--workers", "1"], ["status"], ["status", "--study", "nope"]):
        proc = subprocess.run(
            [sys.executable, "-m", "tuner", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        texts.append(proc.stdout + proc.stderr)
    texts += [p.read_text() for p in (tmp_path / "storage" / "logs").rglob("*.log")]
    assert "***" in texts[0]  # the redacted URL is shown...
    assert not any("hunter2-secret" in t for t in texts)  # ...never the password
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner",
            "status",
            "--storage",
            "postgresql+psycopg://nobody:hunter2-secret@127.0.0.1:1/x",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 1 and "cannot open storage" in bad.stderr and "hunter2-secret" not in bad.stderr + bad.stdout
    )
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
