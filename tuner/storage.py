"""Storage URLs resolved in one place, opened with the right settings, never printed with a
password.

* ``sqlite:///…`` (the default, ``storage/tuner.db``): one machine; WAL mode and a busy timeout
  so several local workers can share it.
* ``postgresql://…`` / ``mysql://…``: many workers on many machines.
* ``journal:///path/to/file.log``: Optuna's journal file, for many local workers on a file
  system where SQLite locking is unreliable (NFS) — see the README for when to pick which.
"""

from __future__ import annotations

import os
import time
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
    if url.startswith(JOURNAL_PREFIX) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: hide everything between :// and @
        head, _, rest = url.partition("://")
        return f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url


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
    """Whether the storage can fail a dead worker's trial by heartbeat (databases can; Optuna's
    journal file cannot, so a killed worker's trial stays RUNNING there)."""
    return journal_path(url) is None


def _prepare_sqlite(path: Path) -> None:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the file: set once, every later connection uses it. Readers (the
    # dashboard, `tuner status`) then never block the writers.
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def open_storage(url: str, *, heartbeat: Heartbeat | None = None) -> BaseStorage:
    """Open an Optuna storage for ``url``.

    Raises:
        StorageError: one line, without the password, when the URL is not usable or the
            database cannot be reached (a worker retries that itself, see
            :func:`tuner.distributed.worker.run_worker`).
    """
    import optuna
    import sqlalchemy.exc

    from tuner.errors import StorageError

    path = journal_path(url)
    if path is not None:
        from optuna.storages.journal import JournalFileBackend

        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    sqlite = sqlite_path(url)
    if sqlite is not None:
        _prepare_sqlite(sqlite)
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
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers starting together on an empty database race to create Optuna's tables;
            # the losers see "already exists" and succeed on a second look.
            schema_races += 1
            if schema_races > 5:
                raise
            time.sleep(0.2 * schema_races)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(
                f"cannot open storage {redact(url)}: {redact(reason) if '://' in reason else reason}; "
                "check the URL, the credentials and that the server is running"
            ) from None
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
            raise StorageError(
                f"storage URL {redact(url)} is not usable ({type(exc).__name__}: {exc}); "
                "expected e.g. sqlite:///storage/tuner.db, postgresql+psycopg://user@host/db or journal:///path.log"
            ) from None


def artifact_store(url: str, override: str | None = None) -> ArtifactStore:
    from optuna.artifacts import FileSystemArtifactStore

    base = artifacts_dir(url, override)
    base.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(base))
