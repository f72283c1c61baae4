"""What to plot, computed from a study without drawing anything (tested without a browser).

Everything here reads only what trials stored (parameters, user attributes); the one
exception, :func:`best_trial_views`, rebuilds the best model from its weights artifact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.search.artifacts import download, weights_kept
from tuner.search.records import (
    CONFIG_ATTR,
    FAIL_ATTR,
    PRUNED_AT_ATTR,
    SCHEDULE_ATTR,
    STEPS_ATTR,
    STUDY_CONFIG_ATTR,
    WEIGHTS_ATTR,
    curves,
    finished_count,
    real_trials,
    state_counts,
    stored_config,
)
from tuner.storage import ArtifactStore
from tuner.vae.schedules import deserialize


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


class TrialCurve(NamedTuple):
    number: int
    state: str
    epochs: list[int]
    val_elbo: list[float]
    pruned_at: int | None


def elbo_curves(study: optuna.Study) -> list[TrialCurve]:
    """Validation ELBO per epoch of every trial that reported at least one epoch."""
    result = []
    for trial in real_trials(study):
        rows = curves(trial)
        if rows:
            pruned = trial.user_attrs.get(PRUNED_AT_ATTR) if trial.state == TrialState.PRUNED else None
            result.append(
                TrialCurve(
                    trial.number,
                    trial.state.name.lower(),
                    [int(r["epoch"]) for r in rows],
                    [r["val_elbo"] for r in rows],
                    pruned,
                )
            )
    return result


class FailedTrial(NamedTuple):
    number: int
    reason: str
    params: dict[str, Any]


def failed_trials(study: optuna.Study) -> list[FailedTrial]:
    return [
        FailedTrial(t.number, t.user_attrs.get(FAIL_ATTR, "unknown"), t.params)
        for t in real_trials(study)
        if t.state == TrialState.FAIL
    ]


def ranked_trials(study: optuna.Study, n: int | None = None) -> list[FrozenTrial]:
    """Completed trials, best first (by val ELBO; for rate–distortion, Pareto front first)."""
    done = [t for t in real_trials(study) if t.state == TrialState.COMPLETE and t.values]
    if is_multi_objective(study):
        front = {t.number for t in study.best_trials}
        ranked = sorted(done, key=lambda t: (t.number not in front, sum(t.values)))
    else:
        reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
        ranked = sorted(done, key=lambda t: t.values[0], reverse=reverse)
    return ranked[:n] if n else ranked


class BetaCurve(NamedTuple):
    number: int
    steps: np.ndarray
    beta: np.ndarray
    steps_per_epoch: int


def beta_curves(study: optuna.Study, top: int = 5, points: int = 400) -> list[BetaCurve]:
    """β at each step of the top trials, evaluated from their own stored schedules."""
    result = []
    for trial in ranked_trials(study, top):
        spec, spe = trial.user_attrs.get(SCHEDULE_ATTR), trial.user_attrs.get(STEPS_ATTR)
        epochs = stored_config(trial).get("training", {}).get("epochs")
        if not spec or not spe or not epochs:
            continue
        total = int(spe * epochs)
        steps = np.unique(np.linspace(0, total, min(points, total + 1)).astype(int))
        result.append(BetaCurve(trial.number, steps, deserialize(spec).values(steps), int(spe)))
    return result


class RatePoint(NamedTuple):
    number: int
    rate: float  # val KL, nats per image
    distortion: float  # val reconstruction NLL, nats per image
    max_beta: float | None
    state: str


@dataclass
class RateDistortion:
    points: list[RatePoint]
    pareto: list[int] = field(default_factory=list)  # trial numbers on the front
    elbo_levels: list[float] = field(default_factory=list)  # lines of equal ELBO: rate + distortion = -level


def rate_distortion(study: optuna.Study, n_levels: int = 5) -> RateDistortion:
    points = []
    for trial in real_trials(study):
        rows = curves(trial)
        if rows and trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            last = rows[-1]
            beta = trial.params.get("max_beta", stored_config(trial).get("schedule", {}).get("max_beta"))
            points.append(RatePoint(trial.number, last["val_kl"], last["val_recon"], beta, trial.state.name.lower()))
    pareto = _pareto_front([(p.rate, p.distortion, p.number) for p in points if p.state == "complete"])
    totals = sorted(p.rate + p.distortion for p in points)
    levels = []
    if totals:
        lo, hi = totals[0], totals[min(len(totals) - 1, max(0, len(totals) // 2))]
        levels = [-float(v) for v in np.linspace(lo, max(hi, lo + 1.0), n_levels)]
    return RateDistortion(points, pareto, levels)


def _pareto_front(items: list[tuple[float, float, int]]) -> list[int]:
    """Trials not dominated in (rate, distortion), both minimised."""
    front = []
    for rate, dist, number in items:
        dominated = any(r <= rate and d <= dist and (r < rate or d < dist) for r, d, _ in items)
        if not dominated:
            front.append(number)
    return sorted(front)


class TableRow(NamedTuple):
    number: int
    values: list[float]
    params: dict[str, Any]
    duration_s: float | None


def top_table(study: optuna.Study, n: int = 10) -> list[TableRow]:
    return [
        TableRow(t.number, list(t.values or []), t.params, t.duration.total_seconds() if t.duration else None)
        for t in ranked_trials(study, n)
    ]


def metadata(study: optuna.Study, storage_label: str) -> dict[str, Any]:
    """Study facts for the report header; ``storage_label`` must already be redacted."""
    trials = real_trials(study)
    counts = state_counts(trials)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    budget = (study.user_attrs.get(STUDY_CONFIG_ATTR) or {}).get("budget", {}).get("n_trials")
    finished = finished_count(counts)
    return {
        "study": study.study_name,
        "storage": storage_label,
        "objective": "rate–distortion (multi-objective)" if is_multi_objective(study) else "maximise val ELBO",
        "first trial started": min(starts).isoformat(timespec="seconds") if starts else "—",
        "last trial finished": max(ends).isoformat(timespec="seconds") if ends else "—",
        "trials by state": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none",
        "budget used": f"{finished} / {budget}" if budget else str(finished),
        "report written": dt.datetime.now().isoformat(timespec="seconds"),
    }


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
    from tuner.vae.training import restore_model

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
