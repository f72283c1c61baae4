"""Where a study's artifacts (model weights, reconstruction pictures) are kept: a folder
beside a file storage, or one folder every machine shares for a database server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol

from tuner.storage._urls import ARTIFACTS_ENV, DEFAULT_DIR, local_path


class ArtifactStore(Protocol):
    """What the project needs of an Optuna artifact store (file system, S3, GCS alike)."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...

    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...

    def remove(self, artifact_id: str) -> None: ...


def artifacts_dir(url: str, override: str | None = None) -> Path:
    """Where artifacts go: --artifacts, $TUNER_ARTIFACTS, else ``artifacts/`` beside a file
    storage, else ``storage/artifacts`` (for a database server, point every machine at one
    shared folder)."""
    chosen = override or os.environ.get(ARTIFACTS_ENV)
    if chosen:
        return Path(chosen)
    local = local_path(url)
    return (local.parent if local else DEFAULT_DIR) / "artifacts"


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
