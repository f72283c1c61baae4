"""Storage URLs resolved in one place, opened with the right settings, never printed with a
password.

* ``sqlite:///…`` (the default, ``storage/tuner.db``): one machine; WAL mode and a busy timeout
  so several local workers can share it.
* ``postgresql://…`` / ``mysql://…``: many workers on many machines.
* ``journal:///path/to/file.log``: Optuna's journal file, for many local workers on a file
  system where SQLite locking is unreliable (NFS) — see the README for when to pick which.
* ``grpc://host:port``: a ``tuner storage-proxy`` in front of a database, for hundreds of
  workers (they hold no database connections of their own).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

STORAGE_ENV = "TUNER_STORAGE"
ARTIFACTS_ENV = "TUNER_ARTIFACTS"
DEFAULT_DIR = Path("storage")
DEFAULT_URL = f"sqlite:///{DEFAULT_DIR / 'tuner.db'}"
SQLITE_BUSY_TIMEOUT_S = 60
JOURNAL_PREFIX = "journal://"
GRPC_PREFIX = "grpc://"


class ArtifactStore(Protocol):
    """What the project needs of an Optuna artifact store (file system, S3, GCS alike)."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...

    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...

    def remove(self, artifact_id: str) -> None: ...


@dataclass(frozen=True)
class Heartbeat:
    """A running trial writes a heartbeat every ``interval`` s; one silent for ``grace`` s is
    marked failed and re-queued with the same parameters (up to ``max_retry`` times)."""

    interval: int = 10
    grace: int = 30
    max_retry: int = 3


def resolve_url(cli_value: str | None = None, file_value: str | None = None) -> str:
    """The one place that decides the storage URL: --storage, then $TUNER_STORAGE, then the
    study file, then the default SQLite file under storage/."""
    url = cli_value or os.environ.get(STORAGE_ENV) or file_value or DEFAULT_URL
    return url.strip()


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for every message and log line."""
    if url.startswith((JOURNAL_PREFIX, GRPC_PREFIX)) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: hide everything between :// and @
        head, _, rest = url.partition("://")
        return f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


def describe(url: str) -> str:
    """The URL without its password, and for a local file where it is on disk: what a user
    needs to find the database a command used."""
    local = sqlite_path(url) or journal_path(url)
    return f"{redact(url)} ({local.absolute()})" if local is not None else redact(url)


def artifacts_dir(url: str, override: str | None = None) -> Path:
    """Where artifacts go: --artifacts, $TUNER_ARTIFACTS, else ``artifacts/`` beside a file
    storage, else ``storage/artifacts`` (for a database server, point every machine at one
    shared folder)."""
    chosen = override or os.environ.get(ARTIFACTS_ENV)
    if chosen:
        return Path(chosen)
    local = sqlite_path(url) or journal_path(url)
    return (local.parent if local else DEFAULT_DIR) / "artifacts"


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url.removeprefix("sqlite:///"))
    return None


def journal_path(url: str) -> Path | None:
    return Path(url.removeprefix(JOURNAL_PREFIX)) if url.startswith(JOURNAL_PREFIX) else None


def supports_heartbeat(url: str) -> bool:
    """Whether the storage can fail a dead worker's trial by heartbeat (databases and the
    gRPC proxy can; Optuna's journal file cannot, so a killed worker's trial stays RUNNING
    there until ``tuner fail-stale``)."""
    return journal_path(url) is None


def grpc_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``grpc://host:port`` URL, else None."""
    if not url.startswith(GRPC_PREFIX):
        return None
    from tuner.errors import StorageError

    host, _, port = url.removeprefix(GRPC_PREFIX).rstrip("/").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StorageError(f"storage URL {url} is not usable; expected grpc://HOST:PORT, e.g. grpc://10.0.0.5:13000")
    return host, int(port)


def _check_local_file(path: Path, url: str, kind: str, read_only: bool) -> None:
    """One-line errors, before Optuna or SQLAlchemy see the file, for the ways a local
    database or journal path can be wrong. A read-only command never creates anything."""
    from tuner.errors import StorageError

    where = f"{kind} {redact(url)} ({path.absolute()})"
    if path.is_dir():
        raise StorageError(f"{where} is a directory; give a file path, e.g. {path / 'tuner.db'}")
    if read_only and not path.exists():
        raise StorageError(
            f"no {kind} at {path.absolute()}; run a study first, or point --storage (or "
            f"${STORAGE_ENV}) at an existing one"
        )
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"{where}: {parent} is a file, not a directory; fix the path")
            if not read_only and not os.access(parent, os.W_OK | os.X_OK):
                raise StorageError(f"{where}: cannot write in {parent}; pick a writable location")
            break
    if path.exists() and not os.access(path, os.R_OK | (0 if read_only else os.W_OK)):
        raise StorageError(f"{where}: permission denied; check the file's permissions")


def _prepare_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the file: set once, every later connection uses it. Readers (the
    # dashboard, `tuner status`) then never block the writers.
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def open_storage(
    url: str,
    *,
    heartbeat: Heartbeat | None = None,
    read_only: bool = False,
    retry_s: float = 0.0,
    log: Callable[[str], object] = print,
) -> BaseStorage:
    """Open an Optuna storage for ``url``.

    ``read_only``: for commands that only read (status, export, report, dashboard): a local
    database or journal that does not exist is an error instead of being created.
    ``retry_s``: once open, a database storage rides out a lost connection for that many
    seconds (:class:`~tuner.retrying_storage.RetryingStorage`, which says so through ``log``);
    opening itself fails at once, so a wrong URL or password is reported immediately.

    Raises:
        StorageError: one line, without the password, when the URL is not usable or the
            database cannot be reached (a worker retries that itself, see
            :func:`tuner.distributed.worker.run_worker`).
    """
    import optuna
    import sqlalchemy.exc

    from tuner.errors import StorageError

    # Heartbeats, their retry callback, metric names and artifacts are marked experimental in
    # Optuna; we rely on them knowingly, and their warnings would be noise in every worker.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    address = grpc_address(url)
    if address is not None:
        from tuner.grpc_storage import GrpcStorage

        grpc: BaseStorage = GrpcStorage(*address)
        if heartbeat is not None:
            callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
            grpc = GrpcStorage(*address, heartbeat.interval, heartbeat.grace, callback)
        if retry_s <= 0:
            return grpc
        from tuner.retrying_storage import RetryingStorage

        return RetryingStorage(grpc, url, retry_s, log)
    path = journal_path(url)
    if path is not None:
        from optuna.storages.journal import JournalFileBackend

        _check_local_file(path, url, "journal", read_only)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    sqlite = sqlite_path(url)
    if sqlite is not None:
        _check_local_file(sqlite, url, "database", read_only)
        try:
            if read_only:
                _check_sqlite_file(sqlite)
            else:
                _prepare_sqlite(sqlite)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StorageError(f"{redact(url)}: not a usable SQLite database ({exc}); check the path") from None
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    hb: dict[str, Any] = {}
    if heartbeat is not None:
        hb = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=heartbeat.max_retry
            ),
        }
    schema_races = 0
    while True:
        try:
            rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
            if sqlite is not None and not read_only:
                _serialize_sqlite_writes(rdb)
            if retry_s <= 0:
                return rdb
            from optuna.storages._cached_storage import _CachedStorage  # what optuna.load_study would add

            from tuner.retrying_storage import RetryingStorage

            return RetryingStorage(_CachedStorage(rdb), redact(url), retry_s, log)
        except sqlalchemy.exc.OperationalError as exc:
            # SQLite: several workers creating one new database race to create Optuna's
            # tables; the losers see "already exists" and succeed on a second look.
            if "already exists" not in str(exc) or schema_races > 5:
                raise StorageError(
                    f"cannot open storage {redact(url)}: {_first_line(exc)}; "
                    "check the URL, the credentials and that the server is running"
                ) from None
            schema_races += 1
            time.sleep(0.2 * schema_races)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers starting together on an empty database race to create Optuna's tables;
            # the losers see "already exists" and succeed on a second look.
            schema_races += 1
            if schema_races > 5:
                raise
            time.sleep(0.2 * schema_races)
        except (sqlalchemy.exc.DatabaseError, sqlalchemy.exc.InterfaceError) as exc:
            raise StorageError(
                f"cannot open storage {redact(url)}: {_first_line(exc)}; "
                "check the URL, the credentials and that the server is running"
            ) from None
        except (
            sqlalchemy.exc.ArgumentError,
            sqlalchemy.exc.NoSuchModuleError,
            ModuleNotFoundError,
            ValueError,  # e.g. a non-numeric port
        ) as exc:
            reason = redact(str(exc)) if "://" in str(exc) else str(exc)
            raise StorageError(
                f"storage URL {redact(url)} is not usable ({type(exc).__name__}: {reason}); "
                "expected e.g. sqlite:///storage/tuner.db, postgresql+psycopg://user@host/db or journal:///path.log"
            ) from None


def _first_line(exc: Exception) -> str:
    """The driver's own message, first line, password-free."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    return redact(reason) if "://" in reason else reason


def _serialize_sqlite_writes(storage: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna guards its read-modify-write steps (popping a waiting trial, failing a stale one)
    with ``SELECT … FOR UPDATE``, which SQLite ignores: two workers could both read RUNNING and
    both fail (and re-queue) the same stale trial, or both take the same waiting trial. With
    the lock taken at BEGIN, the second worker waits for the first (busy timeout) and then
    reads the updated row. Measured by tests/test_sqlite_races.py.
    """
    from sqlalchemy import event

    engine = storage.engine
    engine.dispose()  # connections opened before the listeners would keep pysqlite's BEGIN

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite: let SQLAlchemy's "begin" decide

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _check_sqlite_file(path: Path) -> None:
    """Read the file's schema without writing anything: fails on a file that is not SQLite."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()


def artifact_store(url: str, override: str | None = None) -> ArtifactStore:
    """The artifact store for ``url``, in the folder :func:`artifacts_dir` names. Opening it
    creates nothing: the folder appears with the first artifact, so a read-only command or a
    study refused for bad input leaves no trace."""
    from optuna.artifacts import FileSystemArtifactStore

    class FolderStore(FileSystemArtifactStore):
        def write(self, artifact_id: str, content_body: BinaryIO) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            super().write(artifact_id, content_body)

    folder = artifacts_dir(url, override)
    return FolderStore(str(folder))
