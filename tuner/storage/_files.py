"""Every check of a local file or folder, made before anything is written there.

* Where a command will write (a report, an export, a run folder, the artifacts):
  :func:`folder_problem` and :func:`file_problem` say why it cannot, so that it does not fail
  after minutes of training or scoring.
* A local database or journal named by a storage URL (:func:`check_local_file`,
  :func:`check_journal_file`): refused in one line before Optuna or SQLAlchemy see it.

Writability is probed with a temporary folder in the nearest existing ancestor, removed at
once, so it creates nothing (permission bits say little when running as root or on special
file systems such as /proc).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tuner.storage._errors import error
from tuner.storage._urls import STORAGE_ENV, redact

JOURNAL_LINE_MAX = 1 << 20  # bytes read to check a journal's first and last lines
CUT_RECORD_LOOKS, CUT_RECORD_WAIT_S = 2, 0.3  # a record left open must stay so for 0.6 s


def _nearest_existing(path: Path) -> Path | None:
    return next((p for p in (path, *path.absolute().parents) if p.exists()), None)


def _cannot_write_in(folder: Path) -> str | None:
    try:
        Path(tempfile.mkdtemp(prefix=".tuner-probe-", dir=folder)).rmdir()
    except OSError as exc:
        return f"cannot write in {folder} ({exc.strerror or exc})"
    return None


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be (or become) a folder this process writes in; None if it can."""
    existing = _nearest_existing(folder)
    if existing is None:
        return f"{folder}: no part of the path exists"
    if not existing.is_dir():
        return f"{folder} is a file" if existing == folder else f"{folder} cannot be created: {existing} is a file"
    return _cannot_write_in(existing)


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file (its folders created as needed); None if it can."""
    if path.is_symlink() and not path.exists():
        return f"{path} is a link to {path.readlink()}, which does not exist"
    if path.is_dir():
        return f"{path} is a folder, not a file"
    if path.exists() and not path.is_file():
        return f"{path} is not a regular file"
    return folder_problem(path.parent)


def _url_path(url: str) -> str:
    """The path part of a sqlite:/// or journal URL as typed ("storage/tuner.db" is relative)."""
    rest = url.split(":///", 1)[-1] if ":///" in url else url.split("://", 1)[-1]
    return rest.split("?", 1)[0]


def check_local_file(path: Path, url: str, kind: str, read_only: bool, must_exist: bool = False) -> None:
    """One-line errors, before Optuna or SQLAlchemy see the file, for the ways a local
    database or journal path can be wrong. A read-only command, and a ``must_exist`` one,
    never creates anything.

    Raises:
        StorageError: naming ``kind`` ("database" or "journal"), the URL and the fix.
    """
    where = f"{kind} {redact(url)} ({path.absolute()})"
    if path.is_dir():
        example = "study.log" if kind == "journal" else "tuner.db"
        raise error(f"{where} is a directory; give a file path, e.g. {path / example}")
    if (read_only or must_exist) and not path.exists():
        relative = "" if Path(_url_path(url)).is_absolute() else " (a relative path is read from the current folder)"
        raise error(
            f"no {kind} at {path.absolute()}{relative}; run a study first, run this from the folder the study ran "
            f"in, or point --storage (or ${STORAGE_ENV}) at an existing one"
        )
    parent = _nearest_existing(path.absolute().parent)
    if parent is not None:
        if not parent.is_dir():
            raise error(f"{where}: {parent} is a file, not a directory; fix the path")
        if not read_only and _cannot_write_in(parent):
            raise error(f"{where}: cannot write in {parent}; pick a writable location")
    if path.exists() and not os.access(path, os.R_OK | (0 if read_only else os.W_OK)):
        raise error(f"{where}: permission denied; check the file's permissions")


def check_journal_file(path: Path, url: str) -> None:
    """Refuse a file that is not an Optuna journal before Optuna replays it: its first line
    and its last complete line must be journal records (Optuna ignores a bad last line until
    something is appended after it, and then fails in the middle of a study). An empty file
    is a new journal."""
    where = f"journal {redact(url)} ({path.absolute()})"
    try:
        with path.open("rb") as file:
            first = file.readline(JOURNAL_LINE_MAX)
            size = path.stat().st_size
            file.seek(max(0, size - JOURNAL_LINE_MAX))
            tail = file.read()
    except OSError as exc:
        raise error(f"{where}: cannot read it ({exc.strerror or exc}); check the path") from None
    if not first:
        return
    if not _is_journal_record(first):
        if first.startswith(b"SQLite format 3\0"):
            what = "it is a SQLite database; use sqlite:///" + str(path)
        else:
            what = f"its first line reads {first[:40].decode('utf-8', 'replace')!r}"
        raise error(f"{where} is not an Optuna journal file ({what}); give another path")
    lines = tail.split(b"\n")
    complete = lines[-2] if len(lines) >= 2 and (len(lines) >= 3 or size <= JOURNAL_LINE_MAX) else None
    if complete is not None and not _is_journal_record(complete + b"\n"):
        raise error(
            f"{where} is damaged: its last line reads {complete[:40].decode('utf-8', 'replace')!r}, not a "
            "journal record; restore it from a backup, or give another path"
        )
    if not tail.endswith(b"\n"):
        _check_cut_record(path, where, size)


def _check_cut_record(path: Path, where: str, size: int) -> None:
    """Refuse a journal whose last record has no end of line, once it stays so: a writer killed
    in the middle of an append, or a full disk, leaves it cut. Optuna skips it when reading, but
    the next record appended would be glued to it, and the line they make breaks every later
    replay of the study. A worker appending right now also leaves a record open, for a few
    milliseconds: hence the second look."""
    for _ in range(CUT_RECORD_LOOKS):
        time.sleep(CUT_RECORD_WAIT_S)
        with path.open("rb") as file:
            now = file.seek(0, os.SEEK_END)
            file.seek(max(0, now - 1))
            if now != size or file.read(1) == b"\n":
                return  # a writer was appending: not damage
    with path.open("rb") as file:
        file.seek(max(0, size - JOURNAL_LINE_MAX))
        cut = len(file.read().rsplit(b"\n", 1)[-1])
    raise error(
        f"{where} is damaged: its last record is cut short ({cut} bytes without an end of line, as a writer "
        f"killed mid-write or a full disk leaves it); nothing was changed. Keep a copy, then remove the cut "
        f"record with `truncate -s {size - cut} {path}`"
    )


def looks_like_journal(path: Path) -> bool:
    """Whether ``path`` starts with a journal record: the hint for a journal given as
    ``sqlite:///``."""
    try:
        with path.open("rb") as file:
            return _is_journal_record(file.readline(JOURNAL_LINE_MAX))
    except OSError:
        return False


def _is_journal_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return False
    return isinstance(record, dict) and isinstance(record.get("op_code"), int)


# errno of a write refused for want of space: the device is full, the file passes the process's
# size limit (RLIMIT_FSIZE, with SIGXFSZ ignored), or the user's quota is spent.
NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` says a write failed for want of space. h5py reports it as an OSError
    without errno, in its message."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return True
    text = str(exc)
    return isinstance(exc, OSError) and ("No space left" in text or "File too large" in text or "quota" in text)


@contextmanager
def atomic_path(path: str | Path, need_bytes: int = 0) -> Iterator[Path]:
    """A temporary name beside ``path`` to write the file to; when the block ends, the file is
    flushed to disk and renamed to ``path`` (``os.replace``: a reader sees the old file or the
    whole new one, never a half-written one). If the block fails, the temporary file is removed
    and ``path`` is left as it was.

    The temporary name keeps ``path``'s ending (Keras wants ``.weights.h5``). ``need_bytes``:
    an estimate of the file's size, checked against the free space first, so that a full disk
    is reported before writing (h5py may crash the process when a write fails mid-file).

    Raises:
        StorageError: one line naming ``path`` and the space needed when the disk is full (or
            the process's file-size limit is reached).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}"
    try:
        if need_bytes:
            _reserve(tmp, need_bytes)
        yield tmp
        with tmp.open("rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if not no_space(exc):
            raise
        written = tmp.stat().st_size if tmp.exists() else 0
        raise error(_full(path, max(need_bytes, written), shutil.disk_usage(path.parent).free)) from None
    finally:
        tmp.unlink(missing_ok=True)


def _reserve(tmp: Path, need_bytes: int) -> None:
    """Allocate ``need_bytes`` for ``tmp`` on its disk: the one test that answers for a full
    disk, a spent quota and the process's file-size limit alike, before a library writes. The
    writer then truncates the file and writes its own content."""
    with tmp.open("wb") as file:
        try:
            os.posix_fallocate(file.fileno(), 0, need_bytes)
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:  # a file system without allocation (some NFS): write
                return
            raise


def _full(path: Path, need_bytes: int, free: int) -> str:
    need = _size(need_bytes) if need_bytes else "more space"
    return (
        f"{path}: not enough space to write it (needs at least {need}, {_size(free)} free on its disk, or the "
        "file-size limit is reached); free some space or write elsewhere. Nothing half-written was left there"
    )


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.0f} KB"
