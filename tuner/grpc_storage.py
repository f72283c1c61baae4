"""Many workers through one gRPC storage proxy, with heartbeats.

On hundreds of machines every worker would hold its own connections to PostgreSQL; Optuna's
gRPC proxy (``optuna.storages.run_grpc_proxy_server``, served by ``tuner storage-proxy``)
holds them instead, and workers talk to it with ``grpc://host:port``.

Optuna's ``GrpcStorageProxy`` has no heartbeats, so a killed worker's trial would stay
RUNNING forever and the exact budget could not count running trials. :class:`GrpcStorage`
adds them through the proxy's own API: a running trial's heartbeat is a system attribute
holding the worker's wall-clock time, and a trial whose heartbeat is older than the grace
period is stale. Optuna's heartbeat thread, ``fail_stale_trials`` and the retry callback then
work unchanged. The times of different machines are compared, so keep their clocks in sync
(NTP); the grace period (default 30 s) dwarfs ordinary skew.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import TrialState

HEARTBEAT_ATTR = "tuner:heartbeat"  # trial system attribute: seconds since the epoch


class GrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """``GrpcStorageProxy`` with heartbeats (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        heartbeat_interval: int | None = None,
        grace_period: int = 30,
        stale_trial_callback: Any = None,
    ) -> None:
        super().__init__(host=host, port=port)
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        deadline = time.time() - self._grace_period
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if isinstance(beat, (int, float)) and beat < deadline:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return self._stale_trial_callback

    def get_failed_trial_callback(self) -> Any:
        return self._stale_trial_callback


def serve_proxy(storage: optuna.storages.BaseStorage, host: str, port: int) -> None:
    """Serve ``storage`` to gRPC workers until interrupted."""
    optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
