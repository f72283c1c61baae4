"""Where a command will write, checked before it does any work: a report, an export, a run
folder or the artifacts must not fail after minutes of training or scoring.

Each check probes with a temporary folder in the nearest existing ancestor and removes it, so
it creates nothing (permission bits say little when running as root or on special file
systems such as /proc).
"""

from __future__ import annotations

import tempfile
from pathlib import Path


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
