"""Faults a shared cluster produces every week: a worker frozen and resumed after its trial was
retried elsewhere, damaged files, a full disk, a PostgreSQL restart under load."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from tests.helpers import SLOW_TRIALS, start_worker, write_study
from tuner.search.records import curves

PG_URL = os.environ.get("TUNER_TEST_POSTGRES_URL", "")  # "": the PostgreSQL tests skip


def running_trial(worker: subprocess.Popen[str], name: str, storage: optuna.storages.BaseStorage) -> FrozenTrial:
    """The worker's first RUNNING trial that has finished an epoch; fails at once with the
    worker's output if it ends first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        started = [t for t in study.get_trials(deepcopy=False, states=[TrialState.RUNNING]) if curves(t)]
        if started:
            return started[0]
    worker.kill()
    raise AssertionError(
        f"no trial reached the middle of its training; the worker said:\n{worker.communicate()[0][-3000:]}"
    )


# --- a worker frozen past the grace period, then resumed -------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_worker_frozen_past_grace_drops_its_trial_and_goes_on(tmp_path, backend):
    """``kill -STOP`` a worker in the middle of a trial for longer than ``--grace``; meanwhile
    a second worker (this test, with ask/tell) fails the stale trial, which re-queues it, and
    completes the retry. ``kill -CONT``: the woken worker writes nothing more on its old trial,
    says so in one line, runs what the budget still needs and exits 0."""
    if backend == "postgres" and not PG_URL:
        pytest.skip("set TUNER_TEST_POSTGRES_URL")
    name = f"frozen-{backend}-{os.getpid()}"
    url = f"sqlite:///{tmp_path / 'tuner.db'}" if backend == "sqlite" else PG_URL
    path = write_study(tmp_path, name, **SLOW_TRIALS, budget={"n_trials": 2})
    worker = start_worker(tmp_path, path, url, "--heartbeat", "1", "--grace", "3")
    storage = optuna.storages.RDBStorage(
        url,
        heartbeat_interval=1,
        grace_period=3,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
    )
    try:
        victim = running_trial(worker, name, storage)
        worker.send_signal(signal.SIGSTOP)
        try:
            time.sleep(4.5)  # no heartbeat for longer than the grace period
            study = optuna.load_study(study_name=name, storage=storage)
            optuna.storages.fail_stale_trials(study)
            frozen_at = study._storage.get_trial(victim._trial_id)
            assert frozen_at.state == TrialState.FAIL
            with warnings.catch_warnings():  # "heartbeats are meant for Study.optimize": this is ask/tell
                warnings.simplefilter("ignore", UserWarning)
                retry = study.ask()  # the re-queued copy, run to the end by "another worker"
            assert storage.get_trial(retry._trial_id).system_attrs.get("failed_trial") == victim.number
            study.tell(retry, -100.0)
        finally:
            worker.send_signal(signal.SIGCONT)
        output = worker.communicate(timeout=180)[0]
        assert worker.returncode == 0, output
        assert "Traceback" not in output and "Cannot tell" not in output, output
        said = [line for line in output.splitlines() if f"trial {victim.number} was failed and re-queued" in line]
        assert len(said) == 1, output
        trials = {t.number: t for t in study.get_trials()}
        old = trials[victim.number]
        # Nothing written on the old trial after it was failed: no value, no curve, no artifact.
        assert old.state == TrialState.FAIL and old.values is None
        assert old.user_attrs == frozen_at.user_attrs and old.intermediate_values == frozen_at.intermediate_values
        assert trials[retry.number].state == TrialState.COMPLETE and trials[retry.number].value == -100.0
        finished = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == 2, trials  # the budget, exactly
        assert TrialState.RUNNING not in [t.state for t in trials.values()]
    finally:
        if worker.poll() is None:
            worker.kill()
        storage.engine.dispose()
        if backend == "postgres":
            optuna.delete_study(study_name=name, storage=url)
