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
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
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
PG_CONNECT_TIMEOUT_S = 10
EXAMPLES = (
    "expected e.g. sqlite:///storage/tuner.db, postgresql+psycopg://user@host/db, journal:///path/study.log "
    "or grpc://host:13000"
)
_JOURNAL_LINE_MAX = 1 << 20  # bytes read to check a journal's first and last lines
_SCHEMES = {"sqlite", "journal", "grpc", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql"}
# The pip package of a database driver module that SQLAlchemy could not import.
_DRIVER_PACKAGES = {
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "mysql": "mysql-connector-python",
    "mariadb": "mariadb",
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "oracledb": "oracledb",
    "cx_Oracle": "cx_Oracle",
    "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}


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
    study file, then the default SQLite file under storage/.

    An empty or blank ``$TUNER_STORAGE`` or study-file value counts as unset; an empty
    ``--storage ""`` (typically an unset shell variable) is refused rather than silently
    replaced by the default file.

    Raises:
        StorageError: ``cli_value`` is given but blank.
    """
    if cli_value is not None and not cli_value.strip():
        from tuner.errors import StorageError

        raise StorageError(f"--storage is empty; give a storage URL, e.g. {DEFAULT_URL}, or leave the option out")
    for candidate in (cli_value, os.environ.get(STORAGE_ENV), file_value):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return DEFAULT_URL


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for every message and log line (control
    characters escaped, so that it always prints as one line)."""
    if "://" not in url:  # not a URL; "user:password@host" typed without a scheme is hidden alike
        return _one_line(f"***@{url.rpartition('@')[2]}" if "@" in url else url)
    if url.startswith((JOURNAL_PREFIX, GRPC_PREFIX)):
        return _one_line(url)
    if url.startswith("sqlite") and "@" not in url:  # a file name: shown as typed, never escaped
        return _one_line(url)
    head, _, rest = url.partition("://")
    hidden = f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.host is not None and "@" in parsed.host:  # an unescaped @ in the password
            return _one_line(hidden)
        return _one_line(parsed.render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - unparsable: hide everything between :// and the last @
        return _one_line(hidden)


def describe(url: str) -> str:
    """The URL without its password, and for a local file where it is on disk: what a user
    needs to find the database a command used."""
    local = sqlite_path(url) or journal_path(url)
    return f"{redact(url)} ({_one_line(str(local.absolute()))})" if local is not None else redact(url)


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
    """The file a SQLite URL names, as SQLAlchemy reads it (``%20`` is a space, a query is not
    part of the name); None for any other URL and for in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL at all: check_url says so
        return None
    if parsed.get_backend_name() != "sqlite" or _is_memory_sqlite(parsed):
        return None
    return Path(parsed.database or "")


def journal_path(url: str) -> Path | None:
    return Path(url.removeprefix(JOURNAL_PREFIX)) if url.startswith(JOURNAL_PREFIX) else None


def supports_heartbeat(url: str) -> bool:
    """Whether the storage can fail a dead worker's trial by heartbeat (databases and the
    gRPC proxy can; Optuna's journal file cannot, so a killed worker's trial stays RUNNING
    there until ``tuner fail-stale``)."""
    return journal_path(url) is None


def grpc_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a ``grpc://host:port`` URL, else None.

    Raises:
        StorageError: a grpc:// URL without a usable host and port.
    """
    if not url.startswith(GRPC_PREFIX):
        return None
    host, _, port = url.removeprefix(GRPC_PREFIX).rstrip("/").rpartition(":")
    bad_host = not host or any(c.isspace() or c in "/@?#" for c in host)
    if bad_host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _error(f"storage URL {redact(url)} is not usable; expected grpc://HOST:PORT, e.g. grpc://10.0.0.5:13000")
    return host, int(port)


def check_url(url: str) -> None:
    """Refuse a storage URL that cannot name a usable storage, before anything is opened or
    created: no scheme, an unknown database kind, a driver that is not installed, in-memory
    SQLite (a study there is lost with the process), a server URL without a database, a host
    or port that cannot be right. :func:`open_storage` calls it first; a command may call it
    earlier to fail before slow work (loading data, a backend).

    Raises:
        StorageError: one line naming the URL (without its password) and the fix.
    """
    if not url:
        raise _error(f"the storage URL is empty; give --storage or ${STORAGE_ENV}, e.g. {DEFAULT_URL}")
    bad = sorted({repr(c)[1:-1] for c in url if not c.isprintable()})
    if bad:
        raise _error(f"storage URL {redact(url)} contains control characters ({', '.join(bad)}); remove them")
    if "://" not in url:
        scheme = url.partition(":")[0]
        if ":" in url and scheme.partition("+")[0].lower() in _SCHEMES:
            raise _error(f"storage URL {redact(url)} is not usable: write {scheme}://…; {EXAMPLES}")
        if "@" in url:
            raise _error(
                f"storage URL '{redact(url)}' has no scheme; for a database server write e.g. "
                "postgresql+psycopg://user@host/db"
            )
        raise _error(
            f"storage URL '{url}' has no scheme; for a file write sqlite:///{url} (SQLite) or "
            f"journal://{url} (journal), else e.g. postgresql+psycopg://user@host/db or grpc://host:13000"
        )
    if url.startswith(GRPC_PREFIX):
        grpc_address(url)
        return
    if url.startswith(JOURNAL_PREFIX):
        path = url.removeprefix(JOURNAL_PREFIX)
        if not path or path.endswith("/"):
            raise _error(
                f"storage URL {redact(url)} names no journal file; give one, e.g. {JOURNAL_PREFIX}"
                f"{path or '/path/to/'}study.log"
            )
        return
    parsed = _parse_sqlalchemy_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_url(url, parsed)
    else:
        _check_server_url(url, parsed)


def _parse_sqlalchemy_url(url: str) -> Any:
    """The URL parsed by SQLAlchemy, its dialect and driver loaded (so a missing driver is
    found here, not as Optuna's "Failed to import DB access module")."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except ValueError as exc:  # e.g. a port that is not a number
        raise _error(f"storage URL {redact(url)} is not usable ({_reason(exc)}); {EXAMPLES}") from None
    except sqlalchemy.exc.ArgumentError:
        raise _error(f"storage URL {redact(url)} is not usable (it cannot be parsed); {EXAMPLES}") from None
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise _error(
            f"storage URL {redact(url)} is not usable (unknown database kind {parsed.drivername!r}); {EXAMPLES}"
        ) from None
    if getattr(dialect, "is_async", False):
        raise _error(
            f"storage URL {redact(url)} is not usable: {parsed.drivername} is an asyncio driver, which Optuna "
            f"cannot use; use a plain one, e.g. {parsed.get_backend_name()}://… ({EXAMPLES})"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None)
        if module:
            package = _DRIVER_PACKAGES.get(module, module.partition(".")[0])
            what = f"its driver, the Python module {module!r}, is not installed; `pip install {package}`"
        else:
            what = f"its driver cannot be loaded ({_reason(exc)}); reinstall it"
        raise _error(
            f"storage URL {redact(url)} is not usable: {what}, or use a storage this installation has: "
            "sqlite:///storage/tuner.db, postgresql+psycopg://user@host/db or journal:///path/study.log"
        ) from None
    return parsed


def _check_sqlite_url(url: str, parsed: Any) -> None:
    if _is_memory_sqlite(parsed):
        raise _error(
            f"storage URL {redact(url)} is in-memory SQLite, which keeps nothing (a study and its artifacts "
            "would be lost when the command ends); give a file, e.g. sqlite:///storage/tuner.db"
        )
    if parsed.host or parsed.username or parsed.port:
        raise _error(
            f"storage URL {redact(url)} is not usable: SQLite takes no host; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    if parsed.query:  # SQLAlchemy would ignore some, or open another file than the one checked
        raise _error(
            f"storage URL {redact(url)} is not usable: SQLite URLs take no ?options here (WAL mode and a "
            f"{SQLITE_BUSY_TIMEOUT_S} s busy timeout are set for you); remove everything from the ?"
        )
    if parsed.database.endswith(("/", os.sep)):
        raise _error(f"storage URL {redact(url)} names a folder; give a file in it, e.g. {url}tuner.db")


def _check_server_url(url: str, parsed: Any) -> None:
    shown = redact(url)
    if parsed.host is not None and "@" in parsed.host:  # never echo it: it holds part of the password
        raise _error(
            f"storage URL {shown} is not usable: it holds more than one @; percent-encode @ : / in a user "
            "name or password (%40 for @, %3A for :, %2F for /)"
        )
    if parsed.host is not None and any(c.isspace() or c in "/?#" for c in parsed.host):
        raise _error(f"storage URL {shown} is not usable: {parsed.host!r} is not a host name; fix the host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise _error(f"storage URL {shown} is not usable: port {parsed.port} is outside 1-65535")
    if not parsed.database and not parsed.host:  # `postgresql://user@host` is the user's own database
        raise _error(
            f"storage URL {shown} names no database; add its name after the host, e.g. "
            f"{parsed.drivername}://user@host/studies"
        )


def _is_memory_sqlite(parsed: Any) -> bool:
    database = parsed.database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or parsed.query.get("mode") == "memory"
        or "mode=memory" in database
    )


def _check_local_file(path: Path, url: str, kind: str, read_only: bool, must_exist: bool = False) -> None:
    """One-line errors, before Optuna or SQLAlchemy see the file, for the ways a local
    database or journal path can be wrong. A read-only command, and a ``must_exist`` one,
    never creates anything."""
    where = f"{kind} {redact(url)} ({path.absolute()})"
    if path.is_dir():
        example = "study.log" if kind == "journal" else "tuner.db"
        raise _error(f"{where} is a directory; give a file path, e.g. {path / example}")
    if (read_only or must_exist) and not path.exists():
        raise _error(
            f"no {kind} at {path.absolute()}; run a study first, or point --storage (or "
            f"${STORAGE_ENV}) at an existing one"
        )
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise _error(f"{where}: {parent} is a file, not a directory; fix the path")
            if not read_only and not os.access(parent, os.W_OK | os.X_OK):
                raise _error(f"{where}: cannot write in {parent}; pick a writable location")
            break
    if path.exists() and not os.access(path, os.R_OK | (0 if read_only else os.W_OK)):
        raise _error(f"{where}: permission denied; check the file's permissions")


def _prepare_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the file: set once, every later connection uses it. Readers (the
    # dashboard, `tuner status`) then never block the writers.
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def _sqlite_tables(path: Path) -> set[str]:
    """The tables of a SQLite file, read without writing anything (a zero-byte file has
    none); sqlite3.DatabaseError for a file that is not SQLite."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _server_tables(url: str, engine_kwargs: dict[str, Any]) -> set[str]:
    """The tables of a database server's database, read without writing anything."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _optuna_tables() -> set[str]:
    from optuna.storages._rdb import models

    return {*models.BaseModel.metadata.tables, "alembic_version"}


def _check_journal_file(path: Path, url: str) -> None:
    """Refuse a file that is not an Optuna journal before Optuna replays it: its first line
    and its last complete line must be journal records (Optuna ignores a bad last line until
    something is appended after it, and then fails in the middle of a study). An empty file
    is a new journal."""
    where = f"journal {redact(url)} ({path.absolute()})"
    try:
        with path.open("rb") as file:
            first = file.readline(_JOURNAL_LINE_MAX)
            size = path.stat().st_size
            file.seek(max(0, size - _JOURNAL_LINE_MAX))
            tail = file.read()
    except OSError as exc:
        raise _error(f"{where}: cannot read it ({exc.strerror or exc}); check the path") from None
    if not first:
        return
    if not _is_journal_record(first):
        if first.startswith(b"SQLite format 3\0"):
            what = "it is a SQLite database; use sqlite:///" + str(path)
        else:
            what = f"its first line reads {first[:40].decode('utf-8', 'replace')!r}"
        raise _error(f"{where} is not an Optuna journal file ({what}); give another path")
    lines = tail.split(b"\n")
    complete = lines[-2] if len(lines) >= 2 and (len(lines) >= 3 or size <= _JOURNAL_LINE_MAX) else None
    if complete is not None and not _is_journal_record(complete + b"\n"):
        raise _error(
            f"{where} is damaged: its last line reads {complete[:40].decode('utf-8', 'replace')!r}, not a "
            "journal record; restore it from a backup, or give another path"
        )


def _is_journal_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return False
    return isinstance(record, dict) and isinstance(record.get("op_code"), int)


def holds_nothing(storage: BaseStorage) -> bool:
    """Whether ``storage`` stands for a database without Optuna's tables (a read-only open of
    an empty file or server database): it lists no studies and will never show any."""
    return bool(getattr(storage, "holds_nothing", False))


def _empty_storage(where: str) -> BaseStorage:
    """What a read-only (or must-exist) open returns for an empty database: no studies, and
    nothing written to the file to say so. Creating a study in it is refused."""
    from optuna.storages import InMemoryStorage

    class EmptyStorage(InMemoryStorage):
        holds_nothing = True

        def create_new_study(self, directions: Sequence[Any], study_name: str | None = None) -> int:
            raise _error(f"{where} holds no studies, and this command creates none; create a study with `tuner run`")

    return EmptyStorage()


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
        url: a storage URL (:func:`resolve_url`); checked by :func:`check_url` first.
        heartbeat: heartbeat settings for a worker's storage (databases and the gRPC proxy).
        read_only: for commands that only read (status, export, report, dashboard): nothing is
            created or written. A local database or journal that does not exist is an error;
            an empty one (a zero-byte file, a database without Optuna's tables) has no studies.
        must_exist: for commands that change existing studies but never create one
            (``tuner fail-stale``): like ``read_only``, nothing is created (no file, no
            schema), but the storage can be written.
        retry_s: once open, a database storage rides out a lost connection for that many
            seconds (:class:`~tuner.retrying_storage.RetryingStorage`, which says so through
            ``log``); opening itself fails at once, so a wrong URL, password or proxy
            address is reported immediately.
        log: where a retrying storage reports a lost connection.

    Returns:
        The storage: Optuna's RDB storage (cached and retrying when ``retry_s``), a journal
        storage, or the gRPC proxy client.

    Raises:
        StorageError: one line, without the password, when the URL is not usable, the file is
            not a database or journal, or the database or proxy cannot be reached (a worker
            retries that itself, see :func:`tuner.distributed.worker.run_worker`).

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
        return _open_grpc(url, address, heartbeat, retry_s, log)
    path = journal_path(url)
    if path is not None:
        return _open_journal(path, url, read_only, must_exist)
    return _open_rdb(url, heartbeat, read_only, must_exist, retry_s, log)


def _open_grpc(
    url: str, address: tuple[str, int], heartbeat: Heartbeat | None, retry_s: float, log: Callable[[str], object]
) -> BaseStorage:
    import optuna

    from tuner.grpc_storage import GrpcStorage

    if heartbeat is None:
        grpc = GrpcStorage(*address)
    else:
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
        grpc = GrpcStorage(*address, heartbeat.interval, heartbeat.grace, callback)
    # As a database server on a closed port: no proxy at the address fails now, in one line;
    # only a connection lost after this is retried.
    grpc.check_answering(redact(url))
    if retry_s <= 0:
        return grpc
    from tuner.retrying_storage import RetryingStorage

    return RetryingStorage(grpc, redact(url), retry_s, log)


def _open_journal(path: Path, url: str, read_only: bool, must_exist: bool) -> BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    _check_local_file(path, url, "journal", read_only, must_exist)
    if path.exists():
        _check_journal_file(path, url)
    where = f"journal {redact(url)} ({path.absolute()})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise _error(f"{where}: cannot open it ({exc.strerror or exc}); check the path") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError) as exc:
        # AssertionError: Optuna's replay meets an operation code it does not know.
        raise _error(
            f"{where} is not an Optuna journal file, or is damaged ({type(exc).__name__}: {_reason(exc)}); "
            "give another path"
        ) from None


def _open_rdb(
    url: str,
    heartbeat: Heartbeat | None,
    read_only: bool,
    must_exist: bool,
    retry_s: float,
    log: Callable[[str], object],
) -> BaseStorage:
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    no_create = read_only or must_exist
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # libpq waits for the OS (minutes) on a host that does not answer; fail in seconds.
        engine_kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    sqlite = sqlite_path(url)
    where = f"database {redact(url)}" + (f" ({sqlite.absolute()})" if sqlite is not None else "")
    cannot_open = (
        "check the path" if sqlite is not None else "check the URL, the credentials and that the server is running"
    )
    try:
        if sqlite is not None:
            _check_local_file(sqlite, url, "database", read_only, must_exist)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
            try:
                tables: set[str] | None = _sqlite_tables(sqlite) if sqlite.exists() else set()
            except (sqlite3.DatabaseError, OSError) as exc:
                hint = "; it looks like an Optuna journal: use journal://" + str(sqlite) if _is_journal(sqlite) else ""
                raise _error(f"{redact(url)}: not a usable SQLite database ({exc}); check the path{hint}") from None
        else:
            tables = _server_tables(url, engine_kwargs) if no_create else None
        ours = _optuna_tables()
        if tables and not tables & ours and (no_create or sqlite is not None):
            if sqlite is not None:  # another program's file, never ours to add tables to
                listed = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
                raise _error(f"{where} is not an Optuna database (it holds the tables {listed}); give another path")
            tables = set()  # a server database shared with other programs: no studies yet
        if no_create and not tables:
            return _empty_storage(where)
        if no_create and tables is not None and not ours <= tables:
            missing = ", ".join(sorted(ours - tables))
            raise _error(
                f"{where} has an incomplete or outdated Optuna schema (missing {missing}); upgrade it with "
                "`optuna storage upgrade --storage URL`"
            )
        if sqlite is not None and not read_only:
            try:
                _prepare_sqlite(sqlite)
            except (sqlite3.DatabaseError, OSError) as exc:
                raise _error(f"{redact(url)}: not a usable SQLite database ({exc}); check the path") from None
    except (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InterfaceError) as exc:
        raise _error(f"cannot open storage {redact(url)}: {_first_line(exc)}; {cannot_open}") from None
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
            rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=no_create, **hb)
            if sqlite is not None and not read_only:
                _serialize_sqlite_writes(rdb)
            if retry_s <= 0:
                return rdb
            from optuna.storages._cached_storage import _CachedStorage  # what optuna.load_study would add

            from tuner.retrying_storage import RetryingStorage

            return RetryingStorage(_CachedStorage(rdb), redact(url), retry_s, log)
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
        ) as exc:
            # Workers starting together on a new database race to create Optuna's tables;
            # the losers see "already exists" (or a duplicate key) and succeed on a second look.
            text = str(exc).lower()
            if schema_races > 5 or not ("already exists" in text or "duplicate" in text or "unique" in text):
                raise _error(f"cannot open storage {redact(url)}: {_first_line(exc)}; {cannot_open}") from None
            schema_races += 1
            time.sleep(0.2 * schema_races)
        except (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InterfaceError) as exc:
            raise _error(f"cannot open storage {redact(url)}: {_first_line(exc)}; {cannot_open}") from None
        except RuntimeError as exc:  # Optuna: the schema is older or newer than this Optuna
            raise _error(f"{where}: {_reason(exc)}") from None
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as exc:
            raise _error(
                f"storage URL {redact(url)} is not usable ({type(exc).__name__}: {_reason(exc)}); {EXAMPLES}"
            ) from None


def _is_journal(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return _is_journal_record(file.readline(_JOURNAL_LINE_MAX))
    except OSError:
        return False


def _one_line(text: str) -> str:
    """``text`` with control characters escaped: a message always prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _error(message: str) -> Exception:
    from tuner.errors import StorageError

    return StorageError(_one_line(message))


def _reason(exc: BaseException) -> str:
    """An exception's message, first line, password-free."""
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return redact(reason) if "://" in reason else reason


def _first_line(exc: Exception) -> str:
    """The driver's own message, first line, password-free."""
    return _reason(getattr(exc, "orig", None) or exc)


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
