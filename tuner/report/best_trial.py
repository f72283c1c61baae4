"""The trials' views: reconstructions and samples, KL per latent dimension, active units,
reconstruction quality and one diagnosis per trial.

Read from the .npz artifact each trial saved at its end
(:func:`tuner.vae.evaluation.trial_views`), so that a report needs neither a backend nor the
training data. A study whose trials predate that artifact gets its best trial's views rebuilt
from the weights instead: that path alone loads Keras and the data.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from tuner.report.data import max_beta, ranked_trials
from tuner.search.artifacts import download, weights_kept
from tuner.search.records import CONFIG_ATTR, STEPS_ATTR, VIEWS_ATTR, WEIGHTS_ATTR, curves
from tuner.storage import ArtifactStore
from tuner.vae.diagnosis import ACTIVE_UNIT_THRESHOLD, reading

ACROSS_BETA = 6  # top trials whose reconstructions the report lines up by β


@dataclass
class TrialViews:
    number: int
    originals: np.ndarray  # (n, H, W, C) in [0, 1]
    reconstructions: np.ndarray
    samples: np.ndarray
    kl_per_dim: list[float]  # nats, mean over the validation images scored
    active_units: int
    latent_dim: int
    diagnosis: list[str]
    max_beta: float | None = None
    val_elbo: float | None = None  # nats per image, the last epoch's
    bits_per_dim: float | None = None  # from the val ELBO, 8-bit likelihoods only
    png_bits_per_dim: float | None = None  # the same validation images stored as PNG
    psnr_db: float | None = None
    ssim: float | None = None
    sharpness: float | None = None  # reconstructions' fine detail over the inputs' (1 = as sharp)


BestViews = TrialViews  # the best trial's views, as figures name them


def _unit(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / 255.0


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _views_from_arrays(trial: FrozenTrial, arrays: dict[str, np.ndarray]) -> TrialViews:
    active = int((arrays["activity"] > ACTIVE_UNIT_THRESHOLD).sum())
    latent_dim = int(arrays["latent_dim"])
    psnr, ssim, sharpness, png = (_finite(float(v)) for v in arrays["quality"])
    rows = curves(trial)
    last: dict[str, Any] = {**rows[-1]} if rows else {}
    val_elbo = last.get("val_elbo")
    bits = None
    if png is not None and val_elbo is not None:  # an 8-bit likelihood: its ELBO is a discrete bound
        bits = -float(val_elbo) / (int(arrays["dims"]) * math.log(2))
    recon, kl = last.get("val_recon"), last.get("val_kl")
    diagnosis = (
        reading(float(recon), float(kl), active, latent_dim, sharpness, bits, png)
        if recon is not None and kl is not None
        else ["No curves stored."]
    )
    return TrialViews(
        number=trial.number,
        originals=_unit(arrays["originals"]),
        reconstructions=_unit(arrays["reconstructions"]),
        samples=_unit(arrays["samples"]),
        kl_per_dim=[float(v) for v in arrays["kl_per_dim"]],
        active_units=active,
        latent_dim=latent_dim,
        diagnosis=diagnosis,
        max_beta=max_beta(trial),
        val_elbo=None if val_elbo is None else float(val_elbo),
        bits_per_dim=bits,
        png_bits_per_dim=png,
        psnr_db=psnr,
        ssim=ssim,
        sharpness=sharpness,
    )


def stored_views(store: ArtifactStore, trial: FrozenTrial) -> TrialViews | None:
    """The views ``trial`` saved, or None when it saved none (or the store lacks them)."""
    artifact_id = trial.user_attrs.get(VIEWS_ATTR)
    if not isinstance(artifact_id, str):
        return None
    try:
        with store.open_reader(artifact_id) as reader:
            payload = reader.read()
    except Exception:  # noqa: BLE001 - any store's "not found": the trial has no views here
        return None
    with np.load(io.BytesIO(payload)) as saved:
        return _views_from_arrays(trial, {name: saved[name] for name in saved.files})


def best_trial_views(study: optuna.Study, store: ArtifactStore | None) -> TrialViews | None:
    """The views of the best trial that saved them (ranked as the report ranks trials), or,
    for a study whose trials saved none, views rebuilt from the best kept weights."""
    if store is None:
        return None
    ranked = ranked_trials(study)
    for trial in ranked:
        if VIEWS_ATTR in trial.user_attrs:
            views = stored_views(store, trial)
            if views is not None:
                return views
    kept = [t for t in ranked if weights_kept(study, t)]
    return _rebuilt_views(study, store, kept[0]) if kept else None


def views_across_beta(study: optuna.Study, store: ArtifactStore | None, top: int = ACROSS_BETA) -> list[TrialViews]:
    """The stored views of up to ``top`` of the best trials, ordered by their maximum β: the
    same validation images reconstructed at each β, so the β–blur trade-off is seen."""
    if store is None:
        return []
    found = [v for t in ranked_trials(study, top) if (v := stored_views(store, t)) is not None]
    return sorted(found, key=lambda v: (v.max_beta is None, v.max_beta or 0.0, v.number))


def _rebuilt_views(study: optuna.Study, store: ArtifactStore, trial: FrozenTrial, n: int = 8) -> TrialViews:
    """Views of a trial that saved only its weights: the model rebuilt and its validation
    images reloaded (loads the backend)."""
    import tempfile
    from pathlib import Path

    from tuner.config import TrainConfig
    from tuner.vae.backend import load_keras

    load_keras()
    from tuner.vae.data import load_splits
    from tuner.vae.evaluation import trial_views
    from tuner.vae.saving import restore_model

    config = TrainConfig.model_validate(trial.user_attrs[CONFIG_ATTR])
    splits = load_splits(config.data)
    with tempfile.TemporaryDirectory() as tmp:
        path = download(store, trial.user_attrs[WEIGHTS_ATTR], Path(tmp) / "w.weights.h5")
        model = restore_model(config, splits.image_shape, trial.user_attrs.get(STEPS_ATTR, 1), path)
    return _views_from_arrays(trial, trial_views(model, splits.val, n=n))
