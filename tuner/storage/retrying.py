"""A storage that rides out a lost database connection instead of failing the study.

Optuna's RDB storage raises on the first failed statement. A worker whose PostgreSQL server
restarts for 20 s then fails its running trial, and worse: Optuna's ``_run_trial`` cannot
record that failure either, and dies with an ``UnboundLocalError`` from its ``finally`` block
(optuna/study/_optimize.py, Optuna 5.0), leaving the trial RUNNING.

:class:`RetryingStorage` wraps the storage every worker uses. Each call that fails because the
connection is gone is retried with exponential backoff (1, 2, 4 … 30 s) until ``retry_s``
seconds have passed since the connection was lost; the trial simply pauses meanwhile. After
that it raises :class:`~tuner.errors.StorageError` once, and every later call fails at once,
so the worker ends with one line instead of waiting again in every cleanup step.

A stop signal (Ctrl-C, SIGTERM) that arrives during a call is raised when the call ends
(:mod:`tuner.interrupts`), never in the middle of a transaction; during a wait between retries
it is raised at once.

Heartbeats are not retried: a missed beat only matters after the grace period, and the
heartbeat thread must never block the trial's end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from optuna.storages import BaseStorage

from tuner import interrupts
from tuner._compat import BaseHeartbeat
from tuner.errors import StorageError

MAX_DELAY_S = 30.0


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says the database could not be reached,
    as opposed to a bad statement: SQLAlchemy's OperationalError / InterfaceError, which
    Optuna re-raises as StorageInternalError, or a gRPC proxy that is unavailable or whose
    database refused a commit under load (the proxy reports that as UNKNOWN)."""
    import grpc
    import sqlalchemy.exc

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, grpc.RpcError):
            code = seen.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return True
            if code == grpc.StatusCode.UNKNOWN and "during the commit" in str(seen.details()):
                return True
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        # Optuna's trial loading catches a lost connection and retries in the same session
        # (its fallback for too many IN parameters), which then raises PendingRollbackError
        # while handling it: transient exactly when what it was handling is.
        pending = isinstance(seen, sqlalchemy.exc.PendingRollbackError)
        seen = seen.__cause__ or (seen.__context__ if pending else None)
    return False


def lost_storage(exc: BaseException) -> StorageError | None:
    """The StorageError that ``exc`` was raised during the handling of, if any: Optuna may
    replace ours with an error of its own while it cleans up after a trial."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StorageError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _retried(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``{name}`` of the wrapped storage, retried while the connection is lost."
    return method


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """Wraps ``backend`` (Optuna's cached RDB storage); see the module docstring.

    Args:
        backend: the storage to wrap (it must implement BaseHeartbeat).
        label: the storage URL without password, for messages.
        retry_s: seconds without a connection after which the worker gives up.
        log: where to say that the connection is lost and when it is back.
    """

    def __init__(
        self, backend: Any, label: str, retry_s: float, log: Callable[[str], object] = print, sleep: Any = time.sleep
    ) -> None:
        self._backend = backend
        self._label = label
        self._retry_s = retry_s
        self._log = log
        self._sleep = sleep
        self._given_up = False

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._given_up:
            raise StorageError(f"the connection to {self._label} is lost; see the first error")
        lost_at: float | None = None
        delay = 1.0
        while True:
            try:
                with interrupts.deferred():  # a Ctrl-C mid-transaction would leave SQLite locked
                    result = getattr(self._backend, name)(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                lost_at = lost_at if lost_at is not None else now
                if now - lost_at >= self._retry_s:
                    self._given_up = True
                    raise StorageError(
                        f"lost the connection to {self._label} for {self._retry_s:.0f} s; giving up. Finished "
                        "trials are safe in the database; the running one is retried by another worker "
                        "(heartbeat), or rerun this worker to continue"
                    ) from None
                wait = min(delay, self._retry_s - (now - lost_at))
                self._log(f"database unreachable ({type(exc).__name__}); retrying in {wait:.0f} s")
                self._sleep(max(wait, 0.1))
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            if lost_at is not None:
                self._log(f"database reachable again after {time.monotonic() - lost_at:.0f} s")
            return result

    # Every storage method, retried (BaseStorage's abstract methods and the concrete ones
    # Optuna's own storages override).
    create_new_study = _retried("create_new_study")
    delete_study = _retried("delete_study")
    set_study_user_attr = _retried("set_study_user_attr")
    set_study_system_attr = _retried("set_study_system_attr")
    get_study_id_from_name = _retried("get_study_id_from_name")
    get_study_name_from_id = _retried("get_study_name_from_id")
    get_study_directions = _retried("get_study_directions")
    get_study_user_attrs = _retried("get_study_user_attrs")
    get_study_system_attrs = _retried("get_study_system_attrs")
    get_all_studies = _retried("get_all_studies")
    create_new_trial = _retried("create_new_trial")
    set_trial_param = _retried("set_trial_param")
    get_trial_id_from_study_id_trial_number = _retried("get_trial_id_from_study_id_trial_number")
    get_trial_number_from_id = _retried("get_trial_number_from_id")
    get_trial_param = _retried("get_trial_param")
    set_trial_state_values = _retried("set_trial_state_values")
    set_trial_intermediate_value = _retried("set_trial_intermediate_value")
    set_trial_user_attr = _retried("set_trial_user_attr")
    set_trial_system_attr = _retried("set_trial_system_attr")
    get_trial = _retried("get_trial")
    get_all_trials = _retried("get_all_trials")
    get_n_trials = _retried("get_n_trials")
    get_best_trial = _retried("get_best_trial")
    get_trial_params = _retried("get_trial_params")
    get_trial_user_attrs = _retried("get_trial_user_attrs")
    get_trial_system_attrs = _retried("get_trial_system_attrs")
    check_trial_is_updatable = _retried("check_trial_is_updatable")
    _get_stale_trial_ids = _retried("_get_stale_trial_ids")

    def remove_session(self) -> None:
        if not self._given_up:
            self._backend.remove_session()

    def record_heartbeat(self, trial_id: int) -> None:
        if self._given_up:
            return
        try:
            self._backend.record_heartbeat(trial_id)
        except Exception as exc:
            if not is_transient(exc):
                raise

    def get_heartbeat_interval(self) -> int | None:
        return self._backend.get_heartbeat_interval()

    def get_failed_trial_callback(self) -> Any:
        return self._backend.get_failed_trial_callback()

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self._backend.get_heartbeat_stale_trial_callback()
