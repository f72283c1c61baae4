"""One entry point, :func:`open_storage`, for every kind of storage URL: it checks the URL,
then hands it to the module that opens that kind (``_rdb``, ``_journal``, ``_grpc_proxy``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.storage._journal import open_journal
from tuner.storage._rdb import open_rdb
from tuner.storage._urls import check_url, grpc_address, journal_path

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


@dataclass(frozen=True)
class Heartbeat:
    """A running trial writes a heartbeat every ``interval`` s; one silent for ``grace`` s is
    marked failed and re-queued with the same parameters (up to ``max_retry`` times)."""

    interval: int = 10
    grace: int = 30
    max_retry: int = 3

    def stale_trial_callback(self) -> Any:
        """Optuna's callback that re-queues a stale trial, up to ``max_retry`` times."""
        import optuna

        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)


def open_storage(
    url: str,
    *,
    heartbeat: Heartbeat | None = None,
    read_only: bool = False,
    must_exist: bool = False,
    retry_s: float = 0.0,
    log: Callable[[str], object] = print,
) -> BaseStorage:
    """Open an Optuna storage for ``url``.

    Args:
        url: a storage URL (:func:`~tuner.storage.resolve_url`); checked by
            :func:`~tuner.storage.check_url` first.
        heartbeat: heartbeat settings for a worker's storage (databases and the gRPC proxy).
        read_only: for commands that only read (status, export, report, dashboard): nothing is
            created or written. A local database or journal that does not exist is an error;
            an empty one (a zero-byte file, a database without Optuna's tables) has no studies.
        must_exist: for commands that change existing studies but never create one
            (``tuner fail-stale``): like ``read_only``, nothing is created (no file, no
            schema), but the storage can be written.
        retry_s: once open, a database storage rides out a lost connection for that many
            seconds (:class:`~tuner.storage.RetryingStorage`, which says so through
            ``log``); opening itself fails at once, so a wrong URL, password or proxy
            address is reported immediately.
        log: where a retrying storage reports a lost connection.

    Returns:
        The storage: Optuna's RDB storage (cached and retrying when ``retry_s``), a journal
        storage, or the gRPC proxy client.

    Raises:
        StorageError: one line, without the password, when the URL is not usable, the file is
            not a database or journal, or the database or proxy cannot be reached (a worker
            retries once it is open, see ``retry_s``).

    Example::

        storage = open_storage("sqlite:///storage/tuner.db", read_only=True)
    """
    import optuna

    # Heartbeats, their retry callback, metric names and artifacts are marked experimental in
    # Optuna; we rely on them knowingly, and their warnings would be noise in every worker.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    check_url(url)
    address = grpc_address(url)
    if address is not None:
        from tuner.storage._grpc_proxy import open_grpc  # imports gRPC: only for a grpc:// URL

        return open_grpc(url, address, heartbeat, retry_s, log)
    path = journal_path(url)
    if path is not None:
        return open_journal(path, url, read_only, must_exist)
    return open_rdb(url, heartbeat, read_only, must_exist, retry_s, log)
