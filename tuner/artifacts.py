"""Per-trial artifacts in Optuna's artifact store: the weights and a picture of reconstructions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import download_artifact, upload_artifact

WEIGHTS_ATTR = "artifact:weights"
RECON_ATTR = "artifact:reconstructions"
WEIGHTS_REMOVED_ATTR = "weights_removed"


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Stack rows of images (each (n, H, W, C) in [0, 1]) into one uint8 picture."""
    lines = [np.concatenate(list(row), axis=1) for row in rows]
    grid = np.concatenate(lines, axis=0)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    return (np.clip(grid, 0, 1) * 255).astype(np.uint8)


def save_png(pixels: np.ndarray, path: Path, scale: int = 2) -> Path:
    from PIL import Image

    image = Image.fromarray(pixels)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.save(path)
    return path


def reconstruction_picture(model: Any, images: np.ndarray, n: int = 8) -> np.ndarray:
    """Originals (top row) above their reconstructions (bottom row)."""
    import keras

    originals = images[:n]
    recon = keras.ops.convert_to_numpy(model.reconstruct(originals))
    return image_grid([originals, recon])


def upload_trial_artifacts(trial: optuna.Trial, store: Any, model: Any, images: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"trial-{trial.number}.weights.h5"
        model.save_weights(weights)
        trial.set_user_attr(WEIGHTS_ATTR, upload_artifact(artifact_store=store, file_path=str(weights), study_or_trial=trial))
        picture = save_png(reconstruction_picture(model, images), Path(tmp) / f"trial-{trial.number}-reconstructions.png")
        trial.set_user_attr(RECON_ATTR, upload_artifact(artifact_store=store, file_path=str(picture), study_or_trial=trial))


def download(store: Any, artifact_id: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(path))
    return path


def keep_best_weights(study: optuna.Study, store: Any, keep: int) -> None:
    """Delete the weight files of completed trials outside the best ``keep`` (single objective).

    A finished trial cannot be changed any more, so the removals are listed in the study's
    user attribute ``weights_removed`` (trial numbers) instead."""
    done = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]) if t.value is not None]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(done, key=lambda t: t.value, reverse=reverse)
    removed = set(study.user_attrs.get(WEIGHTS_REMOVED_ATTR, []))
    newly = []
    for trial in ranked[keep:]:
        artifact_id = trial.user_attrs.get(WEIGHTS_ATTR)
        if artifact_id and trial.number not in removed:
            try:
                store.remove(artifact_id)
            except Exception:  # noqa: BLE001 - already removed by another worker
                pass
            newly.append(trial.number)
    if newly:
        # Concurrent workers may overwrite each other's list; a missing entry only means a
        # second, harmless attempt to remove an already removed file.
        study.set_user_attr(WEIGHTS_REMOVED_ATTR, sorted(removed | set(newly)))


def weights_kept(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(WEIGHTS_ATTR)) and trial.number not in set(study.user_attrs.get(WEIGHTS_REMOVED_ATTR, []))
