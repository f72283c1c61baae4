"""Per-trial artifacts in Optuna's artifact store: the weights, a picture of reconstructions
(drawn by :mod:`tuner.vae.pictures`) and the report's views of the trial (an .npz of
:func:`tuner.vae.evaluation.trial_views`: the report draws them without a backend), and
keeping only the best weights (the views stay: reports compare the top trials with them).

No deep-learning backend at import: ``tuner export`` reads weights through this module."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.artifacts import download_artifact, upload_artifact

from tuner.search.records import RECON_ATTR, VIEWS_ATTR, WEIGHTS_ATTR, WEIGHTS_REMOVED_ATTR
from tuner.storage import ArtifactStore
from tuner.vae.pictures import reconstruction_picture, save_png

if TYPE_CHECKING:
    from tuner.vae.model import VAE


def check_artifact_folder(folder: Path) -> None:
    """StorageError unless ``folder`` is, or can become, a folder this process can write in:
    checked before a study stores anything, so that a wrong --artifacts does not cost a study
    its trials."""
    from tuner.errors import StorageError
    from tuner.storage import folder_problem

    problem = folder_problem(folder)
    if problem:  # a storage error (exit 1) like a bad database path: the artifacts are its other half
        raise StorageError(
            f"artifacts: {problem}; give a writable folder with --artifacts or $TUNER_ARTIFACTS "
            "(or artifacts.path in the study file)"
        )


def upload_trial_artifacts(trial: optuna.Trial, store: ArtifactStore, model: VAE, images: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"trial-{trial.number}.weights.h5"
        model.save_weights(weights)
        trial.set_user_attr(
            WEIGHTS_ATTR, upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=trial)
        )
        picture = save_png(
            reconstruction_picture(model, images), Path(tmp) / f"trial-{trial.number}-reconstructions.png"
        )
        trial.set_user_attr(
            RECON_ATTR, upload_artifact(artifact_store=store, file_path=str(picture), study_or_trial=trial)
        )
        from tuner.vae.evaluation import trial_views  # a backend module: loaded only where a model trained

        views = Path(tmp) / f"trial-{trial.number}-views.npz"
        np.savez_compressed(views, **trial_views(model, images))
        trial.set_user_attr(
            VIEWS_ATTR, upload_artifact(artifact_store=store, file_path=str(views), study_or_trial=trial)
        )


def download(store: ArtifactStore, artifact_id: str, path: Path) -> Path:
    """Copy artifact ``artifact_id`` to ``path``; TunerError (one line) when the store does not
    hold it, typically an artifact folder other than the one the study wrote to."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    from tuner.errors import TunerError
    from tuner.storage import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Under a temporary name, renamed when whole: a full disk leaves no half-written weights.
        with atomic_path(path) as tmp:
            tmp.unlink(missing_ok=True)  # Optuna's download refuses an existing file
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(tmp))
    except (ArtifactNotFound, NotADirectoryError, FileNotFoundError):
        raise TunerError(
            f"the artifact store holds no artifact {artifact_id}; point --artifacts (or $TUNER_ARTIFACTS) at the "
            "folder the study wrote its artifacts to"
        ) from None
    return path


def keep_best_weights(study: optuna.Study, store: ArtifactStore, keep: int) -> None:
    """Delete the weight files of completed trials outside the best ``keep`` (single objective).

    A finished trial cannot be changed any more, so the removals are listed in the study's
    user attribute ``weights_removed`` (trial numbers) instead."""
    done = [
        t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]) if t.value is not None
    ]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(done, key=lambda t: float(t.value or 0.0), reverse=reverse)
    removed = set(study.user_attrs.get(WEIGHTS_REMOVED_ATTR, []))
    newly = []
    for trial in ranked[keep:]:
        artifact_id = trial.user_attrs.get(WEIGHTS_ATTR)
        if artifact_id and trial.number not in removed:
            # Another worker may have removed it already; any store's "not found" will do.
            with contextlib.suppress(Exception):
                store.remove(artifact_id)
            newly.append(trial.number)
    if newly:
        # Concurrent workers may overwrite each other's list; a missing entry only means a
        # second, harmless attempt to remove an already removed file.
        study.set_user_attr(WEIGHTS_REMOVED_ATTR, sorted(removed | set(newly)))


def weights_kept(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(WEIGHTS_ATTR)) and trial.number not in set(
        study.user_attrs.get(WEIGHTS_REMOVED_ATTR, [])
    )


def remove_study_artifacts(study: optuna.Study, store: ArtifactStore) -> int:
    """Remove every artifact that the study's trials stored (weights, pictures); returns how
    many were removed (already missing ones are skipped)."""
    removed = 0
    for trial in study.get_trials(deepcopy=False):
        for key, artifact_id in trial.user_attrs.items():
            if key.startswith("artifact:") and isinstance(artifact_id, str):
                try:
                    store.remove(artifact_id)
                except Exception:  # noqa: BLE001 - any store's "not found": nothing left to remove
                    continue
                removed += 1
    return removed
