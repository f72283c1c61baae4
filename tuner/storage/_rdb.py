"""Optuna's RDB storage (SQLite files and database servers), opened with the right settings.

SQLite gets WAL mode and a busy timeout, so that several local workers can share one file,
and writes serialised at BEGIN (:func:`serialize_sqlite_writes`); PostgreSQL a connect
timeout. Before Optuna sees a database, its tables are read without writing anything: another
program's SQLite file is refused rather than given Optuna's tables, and a read-only open of a
database without them stands for an empty storage (:func:`holds_nothing`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.storage._errors import error, reason
from tuner.storage._files import check_local_file, looks_like_journal
from tuner.storage._urls import EXAMPLES, SQLITE_BUSY_TIMEOUT_S, redact, sqlite_path

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from tuner.storage._open import Heartbeat

PG_CONNECT_TIMEOUT_S = 10


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
            raise error(f"{where} holds no studies, and this command creates none; create a study with `tuner run`")

    return EmptyStorage()


def open_rdb(
    url: str,
    heartbeat: Heartbeat | None,
    read_only: bool,
    must_exist: bool,
    retry_s: float,
    log: Callable[[str], object],
) -> BaseStorage:
    """Optuna's RDBStorage for ``url`` (see :func:`tuner.storage.open_storage` for the
    arguments), cached and retrying when ``retry_s`` > 0."""
    import sqlalchemy.exc

    no_create = read_only or must_exist
    sqlite = sqlite_path(url)
    where = f"database {redact(url)}" + (f" ({sqlite.absolute()})" if sqlite is not None else "")
    cannot_open = (
        "check the path" if sqlite is not None else "check the URL, the credentials and that the server is running"
    )
    engine_kwargs = _engine_kwargs(url, sqlite)
    try:
        if sqlite is not None:
            check_local_file(sqlite, url, "database", read_only, must_exist)
            tables: set[str] | None = _sqlite_file_tables(sqlite, url)
        else:
            tables = _server_tables(url, engine_kwargs) if no_create else None
        tables = _checked_schema(tables, where, sqlite is not None, no_create)
        if no_create and not tables:
            return _empty_storage(where)
        if sqlite is not None and not read_only:
            try:
                _prepare_sqlite(sqlite)
            except (sqlite3.DatabaseError, OSError) as exc:
                raise error(f"{redact(url)}: not a usable SQLite database ({exc}); check the path") from None
    except (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InterfaceError) as exc:
        raise error(f"cannot open storage {redact(url)}: {reason(exc)}; {cannot_open}") from None
    rdb_kwargs: dict[str, Any] = {"engine_kwargs": engine_kwargs, "skip_table_creation": no_create}
    if heartbeat is not None:
        rdb_kwargs |= {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace,
            "heartbeat_stale_trial_callback": heartbeat.stale_trial_callback(),
        }
    rdb = _create_rdb(url, where, cannot_open, rdb_kwargs, serialize=sqlite is not None and not read_only)
    if retry_s <= 0:
        return rdb
    from tuner._compat import cached_storage  # what optuna.load_study would add
    from tuner.storage.retrying import RetryingStorage

    return RetryingStorage(cached_storage(rdb), redact(url), retry_s, log)


def _engine_kwargs(url: str, sqlite: Path | None) -> dict[str, Any]:
    if sqlite is not None:
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    from sqlalchemy.engine import make_url

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # libpq waits for the OS (minutes) on a host that does not answer; fail in seconds.
        engine_kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return engine_kwargs


def _checked_schema(tables: set[str] | None, where: str, local: bool, no_create: bool) -> set[str] | None:
    """``tables`` (None: not read, Optuna creates what is missing), refused when they cannot
    be Optuna's; the tables of a server database shared with other programs count as none."""
    from tuner._compat import optuna_rdb_table_names

    ours = optuna_rdb_table_names()
    if tables and not tables & ours and (no_create or local):
        if local:  # another program's file, never ours to add tables to
            listed = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
            raise error(f"{where} is not an Optuna database (it holds the tables {listed}); give another path")
        return set()  # a server database shared with other programs: no studies yet
    if no_create and tables and not ours <= tables:
        missing = ", ".join(sorted(ours - tables))
        raise error(
            f"{where} has an incomplete or outdated Optuna schema (missing {missing}); upgrade it with "
            "`optuna storage upgrade --storage URL`"
        )
    return tables


def _create_rdb(url: str, where: str, cannot_open: str, rdb_kwargs: dict[str, Any], serialize: bool) -> BaseStorage:
    """``optuna.storages.RDBStorage(url, **rdb_kwargs)``, its errors in one line."""
    import optuna
    import sqlalchemy.exc

    schema_races = 0
    while True:
        try:
            rdb = optuna.storages.RDBStorage(url, **rdb_kwargs)
            if serialize:
                serialize_sqlite_writes(rdb)
            return rdb
        except (
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
        ) as exc:
            # Workers starting together on a new database race to create Optuna's tables;
            # the losers see "already exists" (or a duplicate key) and succeed on a second look.
            text = str(exc).lower()
            if schema_races > 5 or not ("already exists" in text or "duplicate" in text or "unique" in text):
                raise error(f"cannot open storage {redact(url)}: {reason(exc)}; {cannot_open}") from None
            schema_races += 1
            time.sleep(0.2 * schema_races)
        except (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.InterfaceError) as exc:
            raise error(f"cannot open storage {redact(url)}: {reason(exc)}; {cannot_open}") from None
        except RuntimeError as exc:  # Optuna: the schema is older or newer than this Optuna
            raise error(f"{where}: {reason(exc)}") from None
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as exc:
            raise error(
                f"storage URL {redact(url)} is not usable ({type(exc).__name__}: {reason(exc)}); {EXAMPLES}"
            ) from None


def _sqlite_file_tables(path: Path, url: str) -> set[str]:
    """The tables of the SQLite file at ``path`` (none if there is no file yet).

    Raises:
        StorageError: the file is not SQLite (with a hint when it is a journal).
    """
    try:
        return _sqlite_tables(path) if path.exists() else set()
    except (sqlite3.DatabaseError, OSError) as exc:
        if "malformed" in str(exc) or isinstance(exc, DamagedDatabase):
            raise error(
                f"{redact(url)} ({path.absolute()}) is damaged ({exc}); nothing was changed. Restore it from a "
                f"backup, or salvage its rows into a new file with `sqlite3 {path} .recover | sqlite3 NEW.db`"
            ) from None
        hint = "; it looks like an Optuna journal: use journal://" + str(path) if looks_like_journal(path) else ""
        raise error(f"{redact(url)}: not a usable SQLite database ({exc}); check the path{hint}") from None


def _prepare_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the file: set once, every later connection uses it. Readers (the
    # dashboard, `tuner status`) then never block the writers.
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


class DamagedDatabase(sqlite3.DatabaseError):
    """SQLite's own check found the file damaged (a truncated or overwritten page)."""


def _sqlite_tables(path: Path) -> set[str]:
    """The tables of a SQLite file, read without writing anything (a zero-byte file has
    none); sqlite3.DatabaseError for a file that is not SQLite, DamagedDatabase for one that
    SQLite's ``quick_check`` finds damaged.

    The check reads every page once (0.12 s for a 114 MB file with an index, warm cache): a page
    damaged in the middle of the file would otherwise surface as a traceback from deep inside
    Optuna, in whichever command first reads it, or be written over by a worker."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:
            problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise DamagedDatabase(f"SQLite's check says: {' '.join(problem.split())}"[:200])
        return tables


def _server_tables(url: str, engine_kwargs: dict[str, Any]) -> set[str]:
    """The tables of a database server's database, read without writing anything."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def serialize_sqlite_writes(storage: Any) -> None:
    """Make every SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna guards its read-modify-write steps (popping a waiting trial, failing a stale one)
    with ``SELECT … FOR UPDATE``, which SQLite ignores: two workers could both read RUNNING and
    both fail (and re-queue) the same stale trial, or both take the same waiting trial. With
    the lock taken at BEGIN, the second worker waits for the first (busy timeout) and then
    reads the updated row. Measured by benchmarks/sqlite_races.py (used by tests/test_faults.py).
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
