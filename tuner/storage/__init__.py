"""Storage URLs resolved in one place, opened with the right settings, never printed with a
password.

* ``sqlite:///…`` (the default, ``storage/tuner.db``): one machine; WAL mode and a busy timeout
  so several local workers can share it.
* ``postgresql://…`` / ``mysql://…``: many workers on many machines.
* ``journal:///path/to/file.log``: Optuna's journal file, for many local workers on a file
  system where SQLite locking is unreliable (NFS) — see the README for when to pick which.
* ``grpc://host:port``: a ``tuner storage-proxy`` in front of a database, for hundreds of
  workers (they hold no database connections of their own).

Every way a URL or a file can be wrong is refused here in one line naming the URL (without
its password) and the fix, before anything is created: no scheme, an unknown database kind or
a driver that is not installed, in-memory SQLite, a file that is not a database or journal, a
proxy that does not answer. A read-only open (status, export, report, dashboard) never writes:
a database without Optuna's tables is reported as holding no studies, not given them.

Callers use the names below, from this package; the modules behind them, one per concept:

* ``_urls``: picking, checking, redacting and describing a URL; ``_errors``: the one-line
  message and the password-free reason of an exception.
* ``_files``: every check of a local file or folder (a database, a journal, an output path).
* ``_open``: :func:`open_storage`, which hands a URL to ``_rdb`` (SQLite and database servers),
  ``_journal`` (journal files) or ``_grpc_proxy`` (the gRPC proxy and its client).
* ``retrying``: :class:`RetryingStorage`, which rides out a lost connection.
* ``artifacts``: the artifact store and its folder.
* ``summary``: a study's trials counted by state (and its Pareto front's size) by aggregate
  queries, without loading the trials.

Importing this package imports neither Optuna nor SQLAlchemy nor gRPC, so a command can check
a URL before paying for them: the names of ``retrying`` and ``_grpc_proxy`` are loaded on first
use (the module's ``__getattr__``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuner.storage._files import atomic_path, file_problem, folder_problem, no_space
from tuner.storage._open import Heartbeat, open_storage
from tuner.storage._rdb import holds_nothing
from tuner.storage._urls import (
    ARTIFACTS_ENV,
    DEFAULT_DIR,
    DEFAULT_URL,
    STORAGE_ENV,
    check_url,
    describe,
    grpc_address,
    journal_path,
    local_path,
    redact,
    resolve_url,
    sqlite_path,
    supports_heartbeat,
)
from tuner.storage.artifacts import ArtifactStore, artifact_store, artifacts_dir
from tuner.storage.summary import count_trials, pareto_front_size

if TYPE_CHECKING:
    from tuner.storage._grpc_proxy import GrpcStorage, serve_proxy
    from tuner.storage.retrying import RetryingStorage, is_transient, lost_storage

_LAZY = {
    "RetryingStorage": "tuner.storage.retrying",
    "is_transient": "tuner.storage.retrying",
    "lost_storage": "tuner.storage.retrying",
    "GrpcStorage": "tuner.storage._grpc_proxy",
    "serve_proxy": "tuner.storage._grpc_proxy",
}

__all__ = [
    "ARTIFACTS_ENV",
    "DEFAULT_DIR",
    "DEFAULT_URL",
    "STORAGE_ENV",
    "ArtifactStore",
    "GrpcStorage",
    "Heartbeat",
    "RetryingStorage",
    "artifact_store",
    "atomic_path",
    "artifacts_dir",
    "check_url",
    "count_trials",
    "describe",
    "file_problem",
    "folder_problem",
    "grpc_address",
    "holds_nothing",
    "is_transient",
    "journal_path",
    "local_path",
    "lost_storage",
    "no_space",
    "open_storage",
    "pareto_front_size",
    "redact",
    "resolve_url",
    "serve_proxy",
    "sqlite_path",
    "supports_heartbeat",
]


def __getattr__(name: str) -> Any:
    # Optuna and gRPC are imported at module level by these two modules (their classes derive
    # from Optuna's); loaded on first use so that `import tuner.storage` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
