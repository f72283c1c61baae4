"""A storage URL or file that cannot work is refused in one ``error:`` line naming the URL
(never its password) and the fix, with no traceback and nothing created or changed; a
read-only command never writes, not even Optuna's schema into an empty file.

Most rows run ``tuner.cli.main`` in-process (the ``tuner`` script's entry point); a few run
``python -m tuner`` to see exactly what a user sees on stderr.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from tests.helpers import REPO, free_port, tiny_study_dict
from tuner import storage as S
from tuner.cli import main
from tuner.errors import StorageError

PG_URL = os.environ.get("TUNER_TEST_POSTGRES_URL", "")  # "": the PostgreSQL tests skip
JOURNAL_RECORD = '{"op_code":0,"worker_id":"w-0","study_name":"j","directions":[1]}\n'


def files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def fill(tmp: Path) -> None:
    """The files the rows point at."""
    (tmp / "afile").write_text("a file, not a folder")
    (tmp / "adir").mkdir()
    (tmp / "empty.db").touch()
    (tmp / "text.db").write_text("hello, I am not SQLite")
    (tmp / "garbage.log").write_text("this is not a journal\nnor is this\n")
    (tmp / "garbage-no-newline.log").write_text("garbage")
    (tmp / "bad-tail.log").write_text(JOURNAL_RECORD + "garbage\n")
    (tmp / "bad-record.log").write_text('{"op_code": 0}\n')
    (tmp / "json-list.log").write_text("[1, 2, 3]\n")
    (tmp / "journal.log").write_text(JOURNAL_RECORD)
    with sqlite3.connect(tmp / "foreign.db") as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with sqlite3.connect(tmp / "sqlite.log") as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")


@pytest.fixture
def work(tmp_path, monkeypatch):
    folder = tmp_path / "work"
    folder.mkdir()
    fill(folder)
    monkeypatch.chdir(folder)
    monkeypatch.delenv(S.STORAGE_ENV, raising=False)
    # `tuner run` sets these with setdefault; owning them here restores them afterwards.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("TUNER_DATA_DIR", os.environ.get("TUNER_DATA_DIR", ""))
    return folder


def refused(argv: list[str], capsys) -> str:
    """Run the CLI; assert one error line, a non-zero exit and no traceback; the line."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exited.value.code not in (0, None), (argv, captured.out, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    return lines[0]


CLOSED = free_port()  # nothing listens there

# (id, URL with {tmp} for the work folder, text the error line must hold)
STATUS_ROWS = [
    ("oracle driver missing", "oracle://u@h/db", "pip install oracledb"),
    ("oracle, bare", "oracle://x", "'oracledb'"),
    ("mysql driver missing", "mysql://u:s3cret@127.0.0.1:1/db", "pip install mysqlclient"),
    ("mysql+pymysql driver missing", "mysql+pymysql://u@h/db", "PyMySQL"),
    ("mssql driver missing", "mssql://u@h/db", "pyodbc"),
    ("async driver", "postgresql+asyncpg://u@h/db", "asyncio driver"),
    ("async sqlite driver", "sqlite+aiosqlite:///{tmp}/x.db", "asyncio driver"),
    ("unknown scheme", "foo://x", "unknown database kind"),
    ("no scheme", "storage/tuner.db", "sqlite:///storage/tuner.db"),
    ("unparsable", "postgresql:/host/db", "not usable"),
    ("grpc, nothing listens", f"grpc://127.0.0.1:{CLOSED}", "no storage proxy answers"),
    ("grpc without port", "grpc://127.0.0.1", "grpc://HOST:PORT"),
    ("grpc without host", "grpc://:13000", "grpc://HOST:PORT"),
    ("grpc port out of range", "grpc://h:70000", "grpc://HOST:PORT"),
    ("in-memory sqlite://", "sqlite://", "in-memory SQLite"),
    ("in-memory :memory:", "sqlite:///:memory:", "in-memory SQLite"),
    ("in-memory shared URI", "sqlite:///file::memory:?cache=shared", "in-memory SQLite"),
    ("in-memory, no path", "sqlite:///", "in-memory SQLite"),
    ("sqlite with a host", "sqlite://host/x.db", "no host"),
    ("sqlite folder", "sqlite:///{tmp}/adir/", "names a folder"),
    ("sqlite with options", "sqlite:///{tmp}/x.db?timeout=abc", "no ?options"),
    ("sqlite with a URI option", "sqlite:///{tmp}/x.db?mode=ro&uri=true", "no ?options"),
    ("scheme without //", "sqlite:x.db", "write sqlite://"),
    ("password without scheme", "bob:s3cret@db-host/studies", "postgresql+psycopg://"),
    ("no database name", "postgresql://", "names no database"),
    (
        "no database name: the user's own, unreachable here",
        "postgresql+psycopg://u@127.0.0.1:1/",
        "cannot open storage",
    ),
    ("port out of range", "postgresql+psycopg://u@h:99999/db", "outside 1-65535"),
    ("port not a number", "postgresql+psycopg://u:pw@127.0.0.1:abc/db", "not usable"),
    ("space in host", "postgresql+psycopg://u@db host/x", "not a host name"),
    ("unescaped @ in password", "postgresql+psycopg://u:p@ss@h/db", "percent-encode"),
    ("closed port", f"postgresql+psycopg://bob:s3cret@127.0.0.1:{CLOSED}/db", "cannot open storage"),
    ("unresolvable unicode host", "postgresql+psycopg://u@hôte.invalid/db", "cannot open storage"),
    ("control character", "sqlite:///{tmp}/a\nb.db", "control characters"),
    ("missing sqlite file", "sqlite:///{tmp}/missing.db", "no database"),
    ("missing, spaces and unicode", "sqlite:///{tmp}/dossier à/tuner é.db", "no database"),
    ("missing, parent is a file", "sqlite:///{tmp}/afile/tuner.db", "no database"),
    ("sqlite on a directory", "sqlite:///{tmp}/adir", "is a directory"),
    ("text file as sqlite", "sqlite:///{tmp}/text.db", "not a usable SQLite"),
    ("journal file as sqlite", "sqlite:///{tmp}/journal.log", "journal://"),
    ("another program's sqlite", "sqlite:///{tmp}/foreign.db", "not an Optuna database"),
    ("journal, no path", "journal://", "names no journal file"),
    ("journal, folder", "journal://{tmp}/adir/", "names no journal file"),
    ("journal on a directory", "journal://{tmp}/adir", "study.log"),
    ("journal missing, relative", "journal://relative.log", "no journal"),
    ("garbage journal", "journal://{tmp}/garbage.log", "not an Optuna journal file"),
    ("garbage journal, no newline", "journal://{tmp}/garbage-no-newline.log", "not an Optuna journal file"),
    ("journal with a garbage last line", "journal://{tmp}/bad-tail.log", "damaged"),
    ("journal record without fields", "journal://{tmp}/bad-record.log", "not an Optuna journal file"),
    ("JSON that is not a journal", "journal://{tmp}/json-list.log", "not an Optuna journal file"),
    ("sqlite file as journal", "journal://{tmp}/sqlite.log", "SQLite database"),
]


@pytest.mark.parametrize("url, names", [row[1:] for row in STATUS_ROWS], ids=[row[0] for row in STATUS_ROWS])
def test_status_refuses_in_one_line_and_touches_nothing(url, names, work, capsys):
    resolved = url.replace("{tmp}", str(work))
    before = files(work)
    line = refused(["status", "--storage", resolved], capsys)
    assert names in line, line
    assert "s3cret" not in line and "ss@" not in line
    assert files(work) == before, "a read-only command created or changed files"


@pytest.mark.parametrize(
    "url, names",
    [
        ("grpc://127.0.0.1:{closed}", "no storage proxy answers"),  # the port filled in below: ids stay fixed
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("oracle://u@h/db", "oracledb"),
        ("journal://{tmp}/garbage.log", "not an Optuna journal file"),
        ("sqlite:///{tmp}/afile/tuner.db", "is a file"),
        ("sqlite:///{tmp}/new.db?timeout=abc", "no ?options"),
        ("sqlite:///{tmp}/foreign.db", "not an Optuna database"),
    ],
)
def test_run_refuses_in_one_line_and_stores_nothing(url, names, work, capsys):
    study_file = work / "s.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study_dict("s")))
    before = files(work)
    start = time.monotonic()
    resolved = url.replace("{tmp}", str(work)).replace("{closed}", str(CLOSED))
    line = refused(["run", str(study_file), "--storage", resolved, "--db-retry", "300"], capsys)
    assert names in line, line
    assert time.monotonic() - start < 60  # no retrying an address that never answered
    assert files(work) == before


def test_study_file_storage_with_a_missing_driver(work, capsys):
    study_file = work / "s.yaml"
    study_file.write_text(yaml.safe_dump({**tiny_study_dict("s"), "storage": "oracle://x"}))
    before = files(work)
    assert "pip install oracledb" in refused(["run", str(study_file)], capsys)
    assert files(work) == before


@pytest.mark.parametrize("command", ["export", "report", "dashboard"])
def test_other_read_only_commands_refuse_the_same_way(command, work, capsys):
    before = files(work)
    study = ["--study", "x"] if command in ("export", "report") else []
    assert "in-memory SQLite" in refused([command, *study, "--storage", "sqlite://"], capsys)
    assert "not an Optuna journal" in refused([command, *study, "--storage", f"journal://{work}/garbage.log"], capsys)
    assert files(work) == before


def test_the_url_from_the_environment_is_checked_alike(work, capsys, monkeypatch):
    monkeypatch.setenv(S.STORAGE_ENV, "mysql://u:s3cret@127.0.0.1:1/db")
    line = refused(["status"], capsys)
    assert "mysqlclient" in line and "s3cret" not in line
    monkeypatch.setenv(S.STORAGE_ENV, "  ")  # blank: unset, the default file (missing here)
    assert "no database" in refused(["status"], capsys)
    assert "--storage is empty" in refused(["status", "--storage", ""], capsys)
    assert not (work / "storage").exists()


def test_the_real_entry_point_prints_one_line(tmp_path):
    env = {**os.environ, "TUNER_STORAGE": f"grpc://127.0.0.1:{CLOSED}"}
    for argv, env_used in (
        (["status", "--storage", "mysql://u:s3cret@127.0.0.1:1/db"], os.environ),
        (["status"], env),
    ):
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "tuner", *argv],
            cwd=tmp_path,
            env={**env_used, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
        assert time.monotonic() - start < 60
    assert list(tmp_path.iterdir()) == []


# --- read-only and must-exist opens never create ---------------------------------------------


def test_status_on_an_empty_sqlite_file_writes_nothing(work, capsys):
    before = files(work)
    with pytest.raises(SystemExit) as exited:
        main(["status", "--storage", f"sqlite:///{work / 'empty.db'}"])
    assert exited.value.code == 0
    assert "no studies" in capsys.readouterr().out
    assert files(work) == before and (work / "empty.db").stat().st_size == 0


@pytest.mark.parametrize("mode", [{"read_only": True}, {"must_exist": True}])
def test_an_empty_file_is_opened_without_a_schema(mode, work):
    before = files(work)
    storage = S.open_storage(f"sqlite:///{work / 'empty.db'}", **mode)
    assert storage.get_all_studies() == []
    with pytest.raises(StorageError, match="holds no studies"):
        optuna.create_study(study_name="new", storage=storage)
    journal = S.open_storage(f"journal://{work / 'journal.log'}", **mode)
    assert [s.study_name for s in journal.get_all_studies()] == ["j"]
    assert files(work) == before


@pytest.mark.parametrize("kind", ["sqlite:///", "journal://"])
def test_must_exist_refuses_a_missing_file_and_creates_nothing(kind, work):
    before = files(work)
    with pytest.raises(StorageError, match="no (database|journal) at .*run a study first"):
        S.open_storage(f"{kind}{work / 'sub' / 'missing.x'}", must_exist=True)
    assert files(work) == before


def test_read_only_reads_an_existing_study_without_changing_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    writer = S.open_storage(url)
    optuna.create_study(study_name="kept", storage=writer).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    writer.engine.dispose()  # type: ignore[attr-defined]
    before = files(tmp_path)
    reader = S.open_storage(url, read_only=True)
    assert [s.study_name for s in reader.get_all_studies()] == ["kept"]
    reader.engine.dispose()  # type: ignore[attr-defined]
    assert files(tmp_path) == before
    # must_exist: an existing study can be changed
    study = optuna.load_study(study_name="kept", storage=S.open_storage(url, must_exist=True))
    study.set_user_attr("note", "changed")
    assert optuna.load_study(study_name="kept", storage=url).user_attrs == {"note": "changed"}


def test_an_incomplete_schema_is_not_completed_by_a_reader(tmp_path):
    path = tmp_path / "partial.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
    before = files(tmp_path)
    with pytest.raises(StorageError, match="incomplete or outdated Optuna schema"):
        S.open_storage(f"sqlite:///{path}", read_only=True)
    assert files(tmp_path) == before


def test_another_programs_sqlite_file_is_never_given_optunas_tables(work):
    before = files(work)
    modes: tuple[dict[str, Any], ...] = ({}, {"read_only": True}, {"must_exist": True})
    for mode in modes:
        with pytest.raises(StorageError, match="not an Optuna database .*photos"):
            S.open_storage(f"sqlite:///{work / 'foreign.db'}", **mode)
    assert files(work) == before


def test_empty_journal_is_a_new_journal_for_writers(work):
    (work / "new.log").touch()
    storage = S.open_storage(f"journal://{work / 'new.log'}")
    optuna.create_study(study_name="fresh", storage=storage)
    assert (work / "new.log").stat().st_size > 0


def test_local_file_messages_name_the_fix(work):
    with pytest.raises(StorageError, match=r"is a directory; give a file path, e\.g\. .*adir/study\.log"):
        S.open_storage(f"journal://{work / 'adir'}")
    with pytest.raises(StorageError, match=r"is a directory; give a file path, e\.g\. .*adir/tuner\.db"):
        S.open_storage(f"sqlite:///{work / 'adir'}")
    with pytest.raises(StorageError, match="afile is a file, not a directory"):
        S.open_storage(f"journal://{work / 'afile' / 'j.log'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="cannot write in"):
            S.open_storage(f"sqlite:///{folder / 'tuner.db'}")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason="set TUNER_TEST_POSTGRES_URL")
def test_read_only_open_of_an_empty_postgres_database_creates_no_tables():
    import sqlalchemy

    assert PG_URL is not None
    admin = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"tuner_storage_errors_{os.getpid()}"
    url = sqlalchemy.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        modes: tuple[dict[str, Any], ...] = ({"read_only": True}, {"must_exist": True})
        for mode in modes:
            assert S.open_storage(url, **mode).get_all_studies() == []
        probe = sqlalchemy.create_engine(url)
        assert sqlalchemy.inspect(probe).get_table_names() == []
        probe.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


# --- the gRPC proxy -----------------------------------------------------------------------


def test_grpc_with_no_proxy_fails_at_open_instead_of_retrying():
    log: list[str] = []
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"no storage proxy answers at grpc://127\.0\.0\.1:\d+ .*storage-proxy"):
        S.open_storage(f"grpc://127.0.0.1:{CLOSED}", retry_s=300, log=log.append)
    assert time.monotonic() - start < 10 and log == []


def test_grpc_server_that_is_not_an_optuna_proxy():
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(StorageError, match="not an Optuna storage proxy"):
            S.open_storage(f"grpc://127.0.0.1:{port}")
    finally:
        server.stop(0)


def test_grpc_with_a_proxy_opens(tmp_path):
    from tuner.storage import serve_proxy

    port = free_port()
    backend = S.open_storage(f"sqlite:///{tmp_path / 'behind.db'}")
    threading.Thread(target=serve_proxy, args=(backend, "127.0.0.1", port), daemon=True).start()
    deadline = time.monotonic() + 30
    while True:
        try:
            storage = S.open_storage(f"grpc://127.0.0.1:{port}", retry_s=5, log=lambda m: None)
            break
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    optuna.create_study(study_name="via-proxy", storage=storage)
    assert [s.study_name for s in backend.get_all_studies()] == ["via-proxy"]


# --- URLs ---------------------------------------------------------------------------------


def test_resolve_url_ignores_blank_values_but_refuses_an_empty_option(monkeypatch):
    monkeypatch.setenv(S.STORAGE_ENV, " ")
    assert S.resolve_url(None, "") == S.DEFAULT_URL
    assert S.resolve_url(None, " journal:///x.log ") == "journal:///x.log"
    with pytest.raises(StorageError, match="--storage is empty"):
        S.resolve_url("  ")


def test_redact_never_leaks_and_is_one_line():
    assert "ss" not in S.redact("postgresql+psycopg://u:p@ss@h/db")
    assert "\n" not in S.redact("sqlite:///a\nb.db")
    assert S.redact("sqlite:///:memory:") == "sqlite:///:memory:"


CHECKS: list[tuple[str, Callable[[str], object]]] = [
    ("sqlite:///x.db", S.check_url),
    ("postgresql+psycopg://u:pw@h:5432/db", S.check_url),
    ("journal://relative.log", S.check_url),
    ("grpc://[::1]:13000", S.check_url),
]


@pytest.mark.parametrize("url, check", CHECKS, ids=[c[0] for c in CHECKS])
def test_good_urls_pass_the_check(url, check):
    check(url)


def test_sqlite_path_reads_the_url_as_sqlalchemy_does():
    assert S.sqlite_path("sqlite:///a%20b.db") == Path("a b.db")
    assert S.sqlite_path("sqlite:///x.db?timeout=5") == Path("x.db")
    assert S.sqlite_path("sqlite:///:memory:") is None
    assert S.sqlite_path("not a url") is None
