"""A worker: joins a study and runs trials until the study's global budget is reached,
surviving database hiccups. ``tuner launch`` starts several of them on one machine."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from tuner import storage as storage_lib
from tuner.errors import StorageError
from tuner.search.objective import EpochCallback
from tuner.search.study import RunSummary, TrialCallback, run_study
from tuner.search.study_file import StudyConfig
from tuner.storage import ArtifactStore


def run_worker(
    study_cfg: StudyConfig,
    url: str,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    artifacts_path: str | None = None,
    artifact_store: ArtifactStore | None = None,
    heartbeat: storage_lib.Heartbeat | None = None,
    retry_s: float = 300.0,
    callbacks: list[TrialCallback] | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    log: Callable[[str], object] = print,
) -> RunSummary:
    """Run trials; if the database connection drops, retry with exponential backoff (1, 2, 4 …
    30 s) and give up with a clear message after ``retry_s`` seconds without a connection.
    A wrong URL or wrong credentials fail at once (StorageError from the first open)."""
    import sqlalchemy.exc

    storage_lib.open_storage(url)  # fail fast on a bad URL, credentials or server
    lost_since: float | None = None
    delay = 1.0
    while True:
        try:
            return run_study(
                study_cfg,
                url,
                n_trials=n_trials,
                timeout=timeout,
                artifacts_path=artifacts_path,
                artifact_store=artifact_store,
                heartbeat=heartbeat,
                callbacks=callbacks,
                epoch_callbacks=epoch_callbacks,
                seed_offset=os.getpid(),
            )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, StorageError) as exc:
            now = time.monotonic()
            lost_since = lost_since or now
            if now - lost_since > retry_s:
                raise StorageError(
                    f"lost the connection to {storage_lib.redact(url)} for {retry_s:.0f} s; giving up "
                    f"({type(exc).__name__}). Finished trials are safe in the database; rerun the worker to continue"
                ) from None
            log(f"database unreachable ({type(exc).__name__}); retrying in {delay:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
