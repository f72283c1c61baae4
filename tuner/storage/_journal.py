"""Optuna's journal file storage, for many local workers on a file system where SQLite
locking is unreliable (NFS). The file is checked before Optuna replays it
(:func:`~tuner.storage._files.check_journal_file`): a damaged journal would otherwise fail in
the middle of a study.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tuner.storage._errors import error, reason
from tuner.storage._files import check_journal_file, check_local_file
from tuner.storage._urls import redact

if TYPE_CHECKING:
    from optuna.storages import BaseStorage


def open_journal(path: Path, url: str, read_only: bool, must_exist: bool) -> BaseStorage:
    """Optuna's JournalStorage on ``path`` (see :func:`tuner.storage.open_storage` for the
    arguments); its folders are created unless ``read_only`` or ``must_exist`` refused a
    missing file first."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    check_local_file(path, url, "journal", read_only, must_exist)
    if path.exists():
        check_journal_file(path, url)
    where = f"journal {redact(url)} ({path.absolute()})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise error(f"{where}: cannot open it ({exc.strerror or exc}); check the path") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, AssertionError) as exc:
        # AssertionError: Optuna's replay meets an operation code it does not know.
        raise error(
            f"{where} is not an Optuna journal file, or is damaged ({type(exc).__name__}: {reason(exc)}); "
            "give another path"
        ) from None
