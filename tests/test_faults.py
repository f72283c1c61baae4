"""Faults an operator meets: the database goes away for a while, a worker is killed during the
last trial and replaced, several workers race on one SQLite file."""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
import time

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from benchmarks.sqlite_races import REPO, one_round
from tests import pg_cluster
from tests.helpers import SLOW_TRIALS, start_worker, wait_for_running_trial, write_study
from tuner.errors import StorageError
from tuner.storage import RetryingStorage, is_transient, lost_storage

# --- riding out a lost connection ----------------------------------------------------------


class FlakyBackend:
    """Fails ``failures`` calls with a lost-connection error, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def get_all_studies(self) -> list[str]:
        self.calls += 1
        if self.calls <= self.failures:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return ["ok"]

    def get_study_id_from_name(self, name: str) -> int:
        raise KeyError(name)  # not a connection problem: never retried


def test_lost_connection_is_retried_until_it_comes_back():
    log: list[str] = []
    sleeps: list[float] = []
    storage = RetryingStorage(FlakyBackend(3), "postgresql://db", 60, log.append, sleep=sleeps.append)
    assert storage.get_all_studies() == ["ok"]
    assert sleeps == [1.0, 2.0, 4.0]  # exponential backoff
    assert log[0].startswith("database unreachable") and log[-1].startswith("database reachable again")
    with pytest.raises(KeyError):  # other errors pass through at once
        storage.get_study_id_from_name("x")


def test_lost_connection_gives_up_after_retry_s_then_fails_fast(monkeypatch):
    clock = iter(range(0, 10_000, 7))
    monkeypatch.setattr("tuner.storage.retrying.time.monotonic", lambda: float(next(clock)))
    backend = FlakyBackend(10**6)
    storage = RetryingStorage(backend, "postgresql://db", 20, lambda m: None, sleep=lambda s: None)
    with pytest.raises(StorageError, match="lost the connection to postgresql://db for 20 s"):
        storage.get_all_studies()
    calls = backend.calls
    with pytest.raises(StorageError):
        storage.get_all_studies()
    assert backend.calls == calls  # no second wait once given up


def test_optuna_cleanup_errors_are_traced_back_to_the_lost_storage():
    lost = StorageError("lost the connection")
    try:
        try:
            raise lost
        except StorageError:
            # What Optuna 5.0 raises from a finally block: implicitly chained, like there.
            raise UnboundLocalError("cannot access local variable 'updated_state'")  # noqa: B904
    except UnboundLocalError as exc:
        assert lost_storage(exc) is lost
    wrapped = optuna.exceptions.StorageInternalError("commit failed")
    wrapped.__cause__ = sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("gone"))
    assert is_transient(wrapped)
    assert not is_transient(optuna.exceptions.StorageInternalError("too long a string"))


@pytest.mark.skipif(not pg_cluster.available(), reason="needs PostgreSQL's server binaries and root (runuser)")
def test_worker_rides_out_a_postgres_outage(tmp_path):
    with pg_cluster.private_cluster() as cluster:
        path = write_study(tmp_path, "outage", **SLOW_TRIALS, budget={"n_trials": 1})
        proc = start_worker(tmp_path, path, cluster.url, "--db-retry", "120", "--heartbeat", "2", "--grace", "60")
        wait_for_running_trial("outage", cluster.url)
        cluster.stop()
        time.sleep(6)  # the server is down for 6 s (three retries: 1, 2, 4 s), in the middle of a trial
        cluster.start()
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output
        assert "database unreachable" in output and "database reachable again" in output, output
        assert "Traceback" not in output
        study = optuna.load_study(study_name="outage", storage=cluster.url)
        states = [t.state for t in study.trials]
        assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 1, states
        assert TrialState.RUNNING not in states


# --- a killed worker replaced at once --------------------------------------------------------


# SQLite only (each worker process costs seconds of start-up): heartbeats and the retry of a
# failed trial are Optuna's RDB code on both; PostgreSQL's own faults are the outage and
# restart tests.
def test_replacement_worker_finishes_a_budget_held_by_a_dead_trial(tmp_path):
    """SIGKILL the worker of the last trial and start a replacement at once (a Slurm requeue):
    the replacement must wait while the trial's heartbeat is fresh, fail it once it is older
    than the grace period, retry it and finish the budget."""
    name = "requeue"
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    path = write_study(tmp_path, name, **SLOW_TRIALS, budget={"n_trials": 1})  # the victim is the last trial
    hb = ["--heartbeat", "1", "--grace", "6"]
    first = start_worker(tmp_path, path, url, *hb)
    try:
        victim = wait_for_running_trial(name, url)
    except AssertionError as exc:
        first.kill()
        raise AssertionError(f"{exc}; the first worker said:\n{first.communicate()[0][-3000:]}") from None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    replacement = start_worker(tmp_path, path, url, *hb)
    (lines, pump) = output_lines(replacement)
    seen: list[str] = []
    # Beat the dead trial's heart from here until the replacement has seen it running: the
    # grace period then starts when the replacement is ready, so it need not cover the
    # replacement's start-up (which a loaded machine stretches past 20 s).
    storage = optuna.storages.RDBStorage(url)
    try:
        deadline = time.monotonic() + 180
        while not any("waiting for 1 running trial" in line for line in seen):
            assert time.monotonic() < deadline and replacement.poll() is None, "".join(seen)
            storage.record_heartbeat(victim._trial_id)
            with contextlib.suppress(queue.Empty):
                while True:
                    seen.append(lines.get(timeout=0.5))
    finally:
        storage.engine.dispose()
    replacement.wait(timeout=300)
    pump.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    assert replacement.returncode == 0, "".join(seen)
    study = optuna.load_study(study_name=name, storage=url)
    trials = {t.number: t for t in study.trials}
    assert trials[victim.number].state == TrialState.FAIL
    assert len(study.get_trials(states=[TrialState.COMPLETE, TrialState.PRUNED])) == 1
    assert TrialState.RUNNING not in [t.state for t in study.trials]


def output_lines(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """``proc``'s output lines as they come, read by a thread (so the caller can do other work
    meanwhile); the thread ends with the output."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


# --- races on one SQLite file ----------------------------------------------------------------


def test_workers_racing_on_one_sqlite_file(tmp_path):
    """6 processes open one new database at once; 3 fail one stale trial at once (it must be
    re-queued once); 3 ask at once while one trial waits (it must be handed out once). Each
    race starts its processes at the same instant (benchmarks/sqlite_races.py runs rounds)."""
    assert one_round(tmp_path, REPO, 0) == {"open_all_succeeded": True, "reaped_once": True, "waiting_taken_once": True}
