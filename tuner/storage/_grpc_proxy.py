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

Optuna's client connects lazily: a wrong address would only show at the first call, as a
gRPC traceback, or as minutes of retries in a worker. :meth:`GrpcStorage.check_answering` asks
the proxy once, with a deadline of a few seconds, when the storage is opened.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import GrpcStorageProxy
from optuna.trial import TrialState

from tuner._compat import BaseHeartbeat, grpc_api_pb2
from tuner.errors import StorageError
from tuner.storage._urls import redact

if TYPE_CHECKING:
    from collections.abc import Callable

    from tuner.storage._open import Heartbeat

HEARTBEAT_ATTR = "tuner:heartbeat"  # trial system attribute: seconds since the epoch
PROBE_TIMEOUT_S = 5.0  # a proxy that has not answered by then is not there
_PROBE_STUDY = "tuner:probe (no such study)"


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

    def check_answering(self, label: str, timeout: float = PROBE_TIMEOUT_S) -> None:
        """Ask the proxy for a study that does not exist: "not found" means an Optuna proxy
        answers. Anything else is one line naming ``label`` (the URL) and the fix.

        Raises:
            StorageError: nothing answers in ``timeout`` s, or something that is not an Optuna
                storage proxy, or a proxy that cannot reach its own database.
        """
        import grpc

        request = grpc_api_pb2().GetStudyIdFromNameRequest(study_name=_PROBE_STUDY)
        try:
            self._stub.GetStudyIdFromName(request, timeout=timeout)
            return
        except grpc.RpcError as exc:
            code, details = exc.code(), " ".join(str(exc.details() or "").split())
        if code == grpc.StatusCode.NOT_FOUND:
            return
        self.close()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            why = f"no answer in {timeout:.0f} s" if code == grpc.StatusCode.DEADLINE_EXCEEDED else details
            raise StorageError(
                f"no storage proxy answers at {label} ({why.rpartition(': ')[2] or code.name}); "
                "start `tuner storage-proxy` there or fix the address"
            )
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise StorageError(
                f"{label} answers but is not an Optuna storage proxy ({details[:80] or code.name}); start "
                "`tuner storage-proxy` there or fix the address"
            )
        raise StorageError(
            f"the storage proxy at {label} failed ({code.name}: {details[:200]}); check the proxy's log and its "
            "database"
        )

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


def open_grpc(
    url: str,
    address: tuple[str, int],
    heartbeat: Heartbeat | None,
    retry_s: float,
    log: Callable[[str], object],
) -> optuna.storages.BaseStorage:
    """The proxy client for ``url`` (see :func:`tuner.storage.open_storage` for the
    arguments), once the proxy has answered; retrying when ``retry_s`` > 0."""
    if heartbeat is None:
        client = GrpcStorage(*address)
    else:
        client = GrpcStorage(*address, heartbeat.interval, heartbeat.grace, heartbeat.stale_trial_callback())
    # As a database server on a closed port: no proxy at the address fails now, in one line;
    # only a connection lost after this is retried.
    client.check_answering(redact(url))
    if retry_s <= 0:
        return client
    from tuner.storage.retrying import RetryingStorage

    return RetryingStorage(client, redact(url), retry_s, log)


def serve_proxy(storage: optuna.storages.BaseStorage, host: str, port: int) -> None:
    """Serve ``storage`` to gRPC workers until interrupted."""
    optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
