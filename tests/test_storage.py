import pytest

from tuner import storage as S
from tuner.errors import StorageError


def test_resolution_order(monkeypatch):
    monkeypatch.delenv(S.STORAGE_ENV, raising=False)
    assert S.resolve_url() == "sqlite:///storage/tuner.db"
    assert S.resolve_url(None, "sqlite:///file.db") == "sqlite:///file.db"
    monkeypatch.setenv(S.STORAGE_ENV, "postgresql://u:pw@h/db")
    assert S.resolve_url(None, "sqlite:///file.db") == "postgresql://u:pw@h/db"
    assert S.resolve_url("sqlite:///cli.db", "sqlite:///file.db") == "sqlite:///cli.db"


def test_redact_hides_passwords():
    assert (
        S.redact("postgresql+psycopg://bob:s3cret@db.example:5432/studies")
        == "postgresql+psycopg://bob:***@db.example:5432/studies"
    )
    assert "s3cret" not in S.redact("mysql://root:s3cret@host/db")
    assert S.redact("sqlite:///storage/tuner.db") == "sqlite:///storage/tuner.db"


def test_sqlite_is_wal_with_busy_timeout(tmp_path):
    import sqlite3

    S.open_storage(f"sqlite:///{tmp_path / 'a' / 't.db'}")
    with sqlite3.connect(tmp_path / "a" / "t.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_urls_give_one_line_without_password():
    with pytest.raises(StorageError) as info:
        S.open_storage("postgresql+psycopg://bob:s3cret@127.0.0.1:1/nowhere")
    message = str(info.value)
    assert "s3cret" not in message and "cannot open storage" in message and "\n" not in message
    with pytest.raises(StorageError, match="not usable"):
        S.open_storage("nosuchdriver://x/y")


def test_journal_storage(tmp_path):
    import optuna

    storage = S.open_storage(f"journal://{tmp_path / 'j.log'}")
    assert isinstance(storage, optuna.storages.JournalStorage)
    assert S.artifacts_dir(f"journal://{tmp_path / 'j.log'}") == tmp_path / "artifacts"
