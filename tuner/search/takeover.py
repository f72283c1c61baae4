"""A worker that wakes to find its trial no longer its own.

A worker frozen for longer than the grace period (``kill -STOP``, a preempted or suspended
VM) stops beating its trial's heart; another worker then fails that trial and re-queues its
parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``), and the retry may finish before
the frozen worker wakes. The stored record is then already right: the original FAIL without
a value, the retry with its own. The woken worker must add nothing to it: Optuna refuses every
write to a finished trial (``UpdateFinishedTrialError``) and then its own ``tell`` with
``ValueError: Cannot tell a FAIL trial.``, which ends ``study.optimize``.

:func:`check_still_running` is asked before writes that do not go through the storage (the
artifact files); :func:`taken_over` recognises the error that ends ``study.optimize`` in this
case, so that the worker says one line and goes on with the study.
"""

from __future__ import annotations

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState


def check_still_running(trial: optuna.Trial) -> None:
    """Raise UpdateFinishedTrialError when ``trial`` is no longer RUNNING in the storage
    (another worker failed it as stale): nothing more may be written for it."""
    stored = trial.study._storage.get_trial(trial._trial_id)
    if stored.state != TrialState.RUNNING:
        raise UpdateFinishedTrialError(f"trial {trial.number} is already {stored.state.name}; nothing is written")


def taken_over(study: optuna.Study, trial: optuna.Trial | None, exc: BaseException) -> int | None:
    """The number of ``trial`` (the one this worker was running when ``exc`` ended
    ``study.optimize``) if another worker finished it meanwhile; None for any other error."""
    if trial is None or not isinstance(exc, (UpdateFinishedTrialError, ValueError)):
        return None
    try:
        state = study._storage.get_trial(trial._trial_id).state
    except Exception:  # noqa: BLE001 - the storage itself is the problem: not a takeover
        return None
    return trial.number if state.is_finished() else None


def taken_over_message(number: int, grace: int | None) -> str:
    """One line for the log of a worker whose trial ``number`` was taken over."""
    after = f"{grace} s" if grace is not None else "the grace period"
    return (
        f"trial {number} was failed and re-queued by another worker while this one was paused (no heartbeat "
        f"for more than {after}); its result is dropped, nothing of it is written, and this worker goes on"
    )
