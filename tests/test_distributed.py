"""Many workers on one study: real `tuner launch` and `tuner status` processes on PostgreSQL
(TUNER_TEST_POSTGRES_URL, set by .ci/run). The faults of workers are in test_faults.py and
test_cluster_faults.py."""

import contextlib
import os
import subprocess
import sys
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import write_study
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
def test_launched_workers_fill_the_budget_exactly(tmp_path, pg_study_name):
    """`tuner launch --workers 3` on PostgreSQL: the budget is met exactly, every worker logs
    to its own file, and no output or log shows the password."""
    path = write_study(tmp_path, pg_study_name, budget={"n_trials": 5}, training={"epochs": 2})
    env = {**os.environ, "TUNER_STORAGE": with_password(PG_URL, "s3cret-pw")}
    cmd = [sys.executable, "-m", "tuner", "launch", str(path), "--workers", "3", "--heartbeat", "2", "--grace", "6"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"3 workers on study {pg_study_name!r}" in proc.stdout
    study = optuna.load_study(study_name=pg_study_name, storage=PG_URL)
    done = finished(study)
    assert len(done) == 5
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    for trial in done:  # every epoch a trial ran is stored: all of them, or up to its pruning
        last = 2 if trial.state == TrialState.COMPLETE else trial.user_attrs["pruned_at_epoch"]
        assert [row["epoch"] for row in curves(trial)] == list(range(1, last + 1))
    skipped = [t for t in study.trials if t.user_attrs.get(SURPLUS_ATTR)]
    assert len(skipped) <= 2  # at most one per other worker, and none of them trained
    logs = sorted((tmp_path / "storage" / "logs" / pg_study_name).glob("worker-*.log"))
    assert len(logs) == 3 and all("worker done" in log.read_text() for log in logs)
    texts = [proc.stdout + proc.stderr, *(log.read_text() for log in logs)]
    assert all("s3cret-pw" not in text for text in texts)  # workers say where the study is...
    assert all("***@" in text for text in texts)  # ...with the password hidden


@needs_pg
@pytest.mark.postgres
def test_password_never_printed(tmp_path, pg_study_name):
    """Read-only commands and errors hide the password (workers: test_four_workers_...)."""
    url = with_password(PG_URL, "hunter2-secret")
    optuna.create_study(study_name=pg_study_name, storage=PG_URL)
    env = {**os.environ, "TUNER_STORAGE": url}
    texts = []
    for args in (["status"], ["status", "--study", "nope"]):
        proc = subprocess.run(
            [sys.executable, "-m", "tuner", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        texts.append(proc.stdout + proc.stderr)
    assert "***" in texts[0] and "***" in texts[1]  # the redacted URL is shown, in "no study" too...
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
