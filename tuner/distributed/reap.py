"""Failing a dead worker's trials by hand, where no heartbeat can (Optuna's journal file).

A worker killed on a journal storage leaves its trial RUNNING forever. ``tuner fail-stale``
fails such trials and re-queues each with its parameters (Optuna's own
``RetryHeartbeatStaleTrialCallback``, as a heartbeat would), so the next worker runs them.
"""

from __future__ import annotations

import datetime as dt

import optuna
from optuna.trial import TrialState

from tuner.errors import OptionError
from tuner.search.records import FAIL_ATTR


def fail_stale(
    study: optuna.Study, *, numbers: list[int] | None = None, older_than_s: float | None = None, max_retry: int = 3
) -> list[int]:
    """Fail the RUNNING trials named by ``numbers``, or those started more than
    ``older_than_s`` seconds ago, and re-queue each; returns the numbers failed."""
    if not numbers and older_than_s is None:
        raise OptionError("name the trials (--trial N) or give --older-than SECONDS")
    now = dt.datetime.now()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if numbers:
        known = {t.number for t in running}
        missing = sorted(set(numbers) - known)
        if missing:
            raise OptionError(f"--trial: {missing} not running in study {study.study_name!r}; running: {sorted(known)}")
        chosen = [t for t in running if t.number in numbers]
    else:
        assert older_than_s is not None
        chosen = [t for t in running if t.datetime_start and (now - t.datetime_start).total_seconds() > older_than_s]
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    failed = []
    for trial in chosen:
        storage = study._storage
        storage.set_trial_user_attr(trial._trial_id, FAIL_ATTR, "failed by hand (tuner fail-stale): its worker is gone")
        if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            retry(study, storage.get_trial(trial._trial_id))
            failed.append(trial.number)
    return failed
