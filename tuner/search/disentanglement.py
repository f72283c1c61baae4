"""A trial's disentanglement scores, for studies with ``objective: {name: disentanglement}`` or
``elbo_and_disentanglement`` (see :mod:`tuner.vae.disentanglement` for the scores).

* At the end of a trial every score (MIG, DCI's three, SAP, active units) is computed on the
  encoder's means of the whole validation split and stored in the trial's
  ``disentanglement`` user attribute; the study's metric is the trial's value. A picture of
  the latent traversal of the most active units is stored with the trial's artifacts.
* At the end of every other epoch of a single-objective study, the metric is computed on the
  first :data:`ROUGH_IMAGES` validation images (DCI with :data:`ROUGH_TREES` trees per forest,
  cheaper and noisier than the final score), reported to Optuna and handed to the pruner,
  which acts at its own rungs. A multi-objective (Pareto) study is never pruned: Optuna cannot
  prune multi-objective trials, so those train every epoch and are scored once, at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import optuna
from optuna.artifacts import upload_artifact

from tuner.errors import ConfigError
from tuner.search.records import PRUNED_AT_ATTR, SCORES_ATTR, TRAVERSAL_ATTR
from tuner.search.study_file import StudyConfig
from tuner.storage import ArtifactStore
from tuner.vae import disentanglement as dis
from tuner.vae.data import Splits
from tuner.vae.pictures import save_png

ROUGH_IMAGES = 1000  # validation images scored at each epoch before the last
ROUGH_TREES = 10  # trees per DCI forest at those epochs (32 at the end)
TRAVERSAL_UNITS = 10  # rows of the traversal picture: the units whose means vary most


def check_factors(study: StudyConfig, splits: Splits) -> None:
    """ConfigError (one line, before anything is stored) when the study scores disentanglement
    but its data has no factors of variation."""
    if study.disentanglement_metric and splits.val_factors is None:
        source = study.data.path or study.data.dataset
        raise ConfigError(
            f"objective: {study.objective.name if not isinstance(study.objective, str) else study.objective} needs "
            f"the data's factors of variation, but {source} has none; use dataset: sprites, or an .npz holding a "
            "'factors' array (N, K) beside the images"
        )


def _rough_score(metric: str, codes: np.ndarray, factors: np.ndarray) -> float:
    if metric == "dci":
        return dis.dci(codes, factors, n_trees=ROUGH_TREES).disentanglement
    return dis.SCORERS[metric](codes, factors)


class EpochScores(keras.callbacks.Callback):
    """Reports the study's metric on a subset of the validation images after each epoch but the
    last, and prunes (see the module docstring)."""

    def __init__(self, trial: optuna.Trial, metric: str, splits: Splits, epochs: int, prune: bool) -> None:
        super().__init__()
        assert splits.val_factors is not None
        self.trial, self.metric, self.epochs, self.prune = trial, metric, epochs, prune
        self.images, self.factors = splits.val[:ROUGH_IMAGES], splits.val_factors[:ROUGH_IMAGES]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epoch += 1  # from 1, as everywhere outside Keras
        if epoch >= self.epochs:  # the final score is computed on every validation image
            return
        value = _rough_score(self.metric, dis.encoder_means(self.model, self.images), self.factors)
        self.trial.report(value, epoch)
        if self.prune and self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_AT_ATTR, epoch)
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


def final_scores(trial: optuna.Trial, model: Any, splits: Splits, store: ArtifactStore | None) -> dis.Scores:
    """Every score on the whole validation split, stored on the trial (with the traversal
    picture, when there is an artifact store)."""
    assert splits.val_factors is not None
    codes = dis.encoder_means(model, splits.val)
    scores = dis.score(codes, splits.val_factors)
    trial.set_user_attr(SCORES_ATTR, scores.as_dict())
    if store is not None:
        units = [int(u) for u in np.argsort(-codes.var(axis=0))[:TRAVERSAL_UNITS]]
        picture = dis.latent_traversal(model, splits.val[0], units)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_png(picture, Path(tmp) / f"trial-{trial.number}-traversal.png")
            trial.set_user_attr(
                TRAVERSAL_ATTR, upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            )
        trial.set_user_attr(f"{TRAVERSAL_ATTR}:units", units)
    return scores
