"""The study's global budget: finished trials in the storage, whoever ran them.

One process, many local workers or workers on many machines all stop at ``n_trials``: each
stops once the finished trials (and, with heartbeats, the earlier running ones) fill it, and
stays while only other workers' running trials fill it, to retry any whose worker died.
Failed trials do not count; ``max_consecutive_failures`` stops a study that cannot succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.search.records import FAIL_ATTR, FINISHED, SURPLUS_ATTR, n_finished
from tuner.storage import Heartbeat

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def stop_at_budget(n_trials: int) -> TrialCallback:
    """Stop once the study holds ``n_trials`` finished trials that count towards the budget
    (Optuna's MaxTrialsCallback would count re-trainings of a winner too)."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if n_finished(study) >= n_trials:
            study.stop()

    return callback


def timed_out(start: float, timeout: float | None) -> bool:
    return timeout is not None and time.monotonic() - start >= timeout


def finish_budget(
    study: optuna.Study,
    n_trials: int,
    heartbeat: Heartbeat,
    optimize: Callable[[], None],
    failures: ConsecutiveFailures,
    timed_out: Callable[[], bool],
    log: Callable[[str], object],
) -> None:
    """Stay until the budget is met when only other workers' running trials fill it.

    A worker stops when finished plus earlier running trials fill the budget (the exact global
    budget). If one of those running trials belongs to a worker that died (SIGKILL, a Slurm
    requeue), leaving would strand the study: nobody is left to notice the missing heartbeat.
    So the worker waits, fails trials whose heartbeat is older than the grace period (Optuna
    re-queues them with the same parameters), and runs what is then missing."""
    said = False
    while not failures.tripped and not timed_out() and n_finished(study) < n_trials:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if running and not waiting:
            if not said:
                log(
                    f"waiting for {len(running)} running trial(s) of other workers; a stale one is retried "
                    f"after {heartbeat.grace} s without heartbeat"
                )
                said = True
            time.sleep(heartbeat.interval)
            optuna.storages.fail_stale_trials(study)
            continue
        optimize()


class ConsecutiveFailures:
    """Stops the study after ``limit`` failed trials in a row (this process's trials)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.last_reason = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get(SURPLUS_ATTR):
            return
        if trial.state == TrialState.FAIL:
            self.count += 1
            self.last_reason = trial.user_attrs.get(FAIL_ATTR, "unknown")
            if self.count >= self.limit:
                study.stop()
        elif trial.state in FINISHED:
            self.count = 0

    @property
    def tripped(self) -> bool:
        return self.count >= self.limit
