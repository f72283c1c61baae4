"""The best trial's views: its reconstructions and samples, KL per latent dimension, active
units and diagnosis.

Apart from :mod:`tuner.report.data` because it rebuilds the trial's Keras model from its
weights artifact and reloads the validation images: the one part of a report that needs a
backend and the data (``tuner report --no-best-views`` skips it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna

from tuner.report.data import ranked_trials
from tuner.search.artifacts import download, weights_kept
from tuner.search.records import CONFIG_ATTR, STEPS_ATTR, WEIGHTS_ATTR, curves
from tuner.storage import ArtifactStore


@dataclass
class BestViews:
    number: int
    originals: np.ndarray
    reconstructions: np.ndarray
    samples: np.ndarray
    kl_per_dim: list[float]
    active_units: int
    latent_dim: int
    diagnosis: list[str]


def best_trial_views(
    study: optuna.Study, store: ArtifactStore | None, n: int = 8, n_eval: int = 1000
) -> BestViews | None:
    """Rebuild the best trial's model from its weights artifact and compute its pictures,
    KL per latent dimension, active units and diagnosis (on up to ``n_eval`` val images)."""
    import tempfile
    from pathlib import Path

    import keras

    from tuner.config import TrainConfig
    from tuner.vae.data import load_splits
    from tuner.vae.evaluation import ACTIVE_UNIT_THRESHOLD, diagnose, posterior_stats
    from tuner.vae.saving import restore_model

    ranked = [t for t in ranked_trials(study) if weights_kept(study, t)]
    if not ranked or store is None:
        return None
    trial = ranked[0]
    config = TrainConfig.model_validate(trial.user_attrs[CONFIG_ATTR])
    splits = load_splits(config.data)
    images = splits.val[:n_eval]
    with tempfile.TemporaryDirectory() as tmp:
        path = download(store, trial.user_attrs[WEIGHTS_ATTR], Path(tmp) / "w.weights.h5")
        model = restore_model(config, splits.image_shape, trial.user_attrs.get(STEPS_ATTR, 1), path)
    recon = keras.ops.convert_to_numpy(model.reconstruct(images[:n]))
    samples = keras.ops.convert_to_numpy(model.sample(n))
    activity, kl_per_dim = posterior_stats(model, images)
    active = int((activity > ACTIVE_UNIT_THRESHOLD).sum())
    last = curves(trial)[-1]
    return BestViews(
        trial.number,
        images[:n],
        recon,
        samples,
        [float(v) for v in kl_per_dim],
        active,
        model.latent_dim,
        diagnose(last["val_recon"], last["val_kl"], active, model.latent_dim),
    )
