"""A worker: joins a study and runs trials until the study's global budget is reached,
riding out database outages. ``tuner launch`` starts several of them on one machine."""

from __future__ import annotations

import os
from collections.abc import Callable

from tuner import storage as storage_lib
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
    artifact_store: ArtifactStore | None = None,
    heartbeat: storage_lib.Heartbeat | None = None,
    retry_s: float = 300.0,
    callbacks: list[TrialCallback] | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    log: Callable[[str], object] = print,
) -> RunSummary:
    """Run trials of ``study_cfg`` with this process's own sampler seed.

    A wrong URL or wrong credentials fail at once (StorageError from the first open). Once
    connected, a lost connection is retried with backoff for ``retry_s`` seconds while the
    running trial waits (:mod:`tuner.retrying_storage`); after that, StorageError. A worker
    whose budget is only filled by other workers' running trials waits for them, and retries
    any whose heartbeat stops (see :func:`tuner.search.study.run_study`).
    """
    storage_lib.open_storage(url)  # fail fast on a bad URL, credentials or server
    return run_study(
        study_cfg,
        url,
        n_trials=n_trials,
        timeout=timeout,
        artifact_store=artifact_store,
        heartbeat=heartbeat,
        callbacks=callbacks,
        epoch_callbacks=epoch_callbacks,
        seed_offset=os.getpid(),
        db_retry_s=retry_s,
        log=log,
    )
