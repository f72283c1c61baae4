"""Storage URLs: the one place that picks the URL, checks it, and prints it.

The URL is decided once (:func:`resolve_url`) and refused, if it cannot name a usable
storage, before anything is opened or created (:func:`check_url`): a command checks it before
minutes of loading data or starting a backend. It is only ever printed through
:func:`redact`, which hides a password however the URL is mistyped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

from tuner.storage._errors import error, one_line, reason

STORAGE_ENV = "TUNER_STORAGE"
ARTIFACTS_ENV = "TUNER_ARTIFACTS"
DEFAULT_DIR = Path("storage")
DEFAULT_URL = f"sqlite:///{DEFAULT_DIR / 'tuner.db'}"
SQLITE_BUSY_TIMEOUT_S = 60
JOURNAL_PREFIX = "journal://"
GRPC_PREFIX = "grpc://"
EXAMPLES = (
    "expected e.g. sqlite:///storage/tuner.db, postgresql+psycopg://user@host/db, journal:///path/study.log "
    "or grpc://host:13000"
)
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
        raise error(f"--storage is empty; give a storage URL, e.g. {DEFAULT_URL}, or leave the option out")
    for candidate in (cli_value, os.environ.get(STORAGE_ENV), file_value):
        if candidate is not None and candidate.strip():
            return candidate.strip()
    return DEFAULT_URL


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for every message and log line (control
    characters escaped, so that it always prints as one line)."""
    if "://" not in url:  # not a URL; "user:password@host" typed without a scheme is hidden alike
        return one_line(f"***@{url.rpartition('@')[2]}" if "@" in url else url)
    if url.startswith((JOURNAL_PREFIX, GRPC_PREFIX)):
        return one_line(url)
    if url.startswith("sqlite") and "@" not in url:  # a file name: shown as typed, never escaped
        return one_line(url)
    head, _, rest = url.partition("://")
    hidden = f"{head}://***@{rest.rpartition('@')[2]}" if "@" in rest else url
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.host is not None and "@" in parsed.host:  # an unescaped @ in the password
            return one_line(hidden)
        return one_line(parsed.render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - unparsable: hide everything between :// and the last @
        return one_line(hidden)


def describe(url: str) -> str:
    """The URL without its password, and for a local file where it is on disk: what a user
    needs to find the database a command used."""
    local = local_path(url)
    return f"{redact(url)} ({one_line(str(local.absolute()))})" if local is not None else redact(url)


def local_path(url: str) -> Path | None:
    """The file a SQLite or journal storage lives in; None for a server or the gRPC proxy."""
    return sqlite_path(url) or journal_path(url)


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
        raise error(f"storage URL {redact(url)} is not usable; expected grpc://HOST:PORT, e.g. grpc://10.0.0.5:13000")
    return host, int(port)


def check_url(url: str) -> None:
    """Refuse a storage URL that cannot name a usable storage, before anything is opened or
    created: no scheme, an unknown database kind, a driver that is not installed, in-memory
    SQLite (a study there is lost with the process), a server URL without a database, a host
    or port that cannot be right. :func:`~tuner.storage.open_storage` calls it first; a
    command may call it earlier to fail before slow work (loading data, a backend).

    Raises:
        StorageError: one line naming the URL (without its password) and the fix.
    """
    if not url:
        raise error(f"the storage URL is empty; give --storage or ${STORAGE_ENV}, e.g. {DEFAULT_URL}")
    bad = sorted({repr(c)[1:-1] for c in url if not c.isprintable()})
    if bad:
        raise error(f"storage URL {redact(url)} contains control characters ({', '.join(bad)}); remove them")
    if "://" not in url:
        _refuse_without_scheme(url)
    if url.startswith(GRPC_PREFIX):
        grpc_address(url)
        return
    if url.startswith(JOURNAL_PREFIX):
        path = url.removeprefix(JOURNAL_PREFIX)
        if not path or path.endswith("/"):
            raise error(
                f"storage URL {redact(url)} names no journal file; give one, e.g. {JOURNAL_PREFIX}"
                f"{path or '/path/to/'}study.log"
            )
        return
    parsed = _parse_sqlalchemy_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_url(url, parsed)
    else:
        _check_server_url(url, parsed)


def _refuse_without_scheme(url: str) -> NoReturn:
    """The fix for a URL without ``://``: a scheme typed without its slashes, a server
    address, or a bare file name."""
    scheme = url.partition(":")[0]
    if ":" in url and scheme.partition("+")[0].lower() in _SCHEMES:
        raise error(f"storage URL {redact(url)} is not usable: write {scheme}://…; {EXAMPLES}")
    if "@" in url:
        raise error(
            f"storage URL '{redact(url)}' has no scheme; for a database server write e.g. "
            "postgresql+psycopg://user@host/db"
        )
    raise error(
        f"storage URL '{url}' has no scheme; for a file write sqlite:///{url} (SQLite) or "
        f"journal://{url} (journal), else e.g. postgresql+psycopg://user@host/db or grpc://host:13000"
    )


def _parse_sqlalchemy_url(url: str) -> Any:
    """The URL parsed by SQLAlchemy, its dialect and driver loaded (so a missing driver is
    found here, not as Optuna's "Failed to import DB access module")."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except ValueError as exc:  # e.g. a port that is not a number
        raise error(f"storage URL {redact(url)} is not usable ({reason(exc)}); {EXAMPLES}") from None
    except sqlalchemy.exc.ArgumentError:
        raise error(f"storage URL {redact(url)} is not usable (it cannot be parsed); {EXAMPLES}") from None
    try:
        dialect = parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise error(
            f"storage URL {redact(url)} is not usable (unknown database kind {parsed.drivername!r}); {EXAMPLES}"
        ) from None
    if getattr(dialect, "is_async", False):
        raise error(
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
            what = f"its driver cannot be loaded ({reason(exc)}); reinstall it"
        raise error(
            f"storage URL {redact(url)} is not usable: {what}, or use a storage this installation has: "
            "sqlite:///storage/tuner.db, postgresql+psycopg://user@host/db or journal:///path/study.log"
        ) from None
    return parsed


def _check_sqlite_url(url: str, parsed: Any) -> None:
    if _is_memory_sqlite(parsed):
        raise error(
            f"storage URL {redact(url)} is in-memory SQLite, which keeps nothing (a study and its artifacts "
            "would be lost when the command ends); give a file, e.g. sqlite:///storage/tuner.db"
        )
    if parsed.host or parsed.username or parsed.port:
        raise error(
            f"storage URL {redact(url)} is not usable: SQLite takes no host; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    if parsed.query:  # SQLAlchemy would ignore some, or open another file than the one checked
        raise error(
            f"storage URL {redact(url)} is not usable: SQLite URLs take no ?options here (WAL mode and a "
            f"{SQLITE_BUSY_TIMEOUT_S} s busy timeout are set for you); remove everything from the ?"
        )
    if parsed.database.endswith(("/", os.sep)):
        raise error(f"storage URL {redact(url)} names a folder; give a file in it, e.g. {url}tuner.db")


def _check_server_url(url: str, parsed: Any) -> None:
    shown = redact(url)
    if parsed.host is not None and "@" in parsed.host:  # never echo it: it holds part of the password
        raise error(
            f"storage URL {shown} is not usable: it holds more than one @; percent-encode @ : / in a user "
            "name or password (%40 for @, %3A for :, %2F for /)"
        )
    if parsed.host is not None and any(c.isspace() or c in "/?#" for c in parsed.host):
        raise error(f"storage URL {shown} is not usable: {parsed.host!r} is not a host name; fix the host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise error(f"storage URL {shown} is not usable: port {parsed.port} is outside 1-65535")
    if not parsed.database and not parsed.host:  # `postgresql://user@host` is the user's own database
        raise error(
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
