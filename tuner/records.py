"""What a trial stores about itself in Optuna's user attributes, and how to read it back.

Kept free of Keras imports so that status, export and reports load instantly.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from optuna.trial import TrialState

# Trials that count towards a study's budget.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY_CONFIG_ATTR = "study_config"  # on the study: the study file it was created from

CONFIG_ATTR = "config"  # the trial's full TrainConfig, as JSON
SCHEDULE_ATTR = "schedule"  # the β schedule in steps (schedules.serialize)
STEPS_ATTR = "steps_per_epoch"
CURVE_PREFIX = "curve/"  # curve/0001, curve/0002, ...: one epoch's metrics each
FAIL_ATTR = "fail_reason"
PRUNED_AT_ATTR = "pruned_at_epoch"
BASELINE_ATTR = "baseline"
TRAIN_SECONDS_ATTR = "train_seconds"  # wall time inside train(): model building, fit, validation
SURPLUS_ATTR = "skipped_surplus"  # started after the budget was full; trained nothing


def curve_key(epoch: int) -> str:
    return f"{CURVE_PREFIX}{epoch:04d}"


def real_trials(study: Any) -> list[Any]:
    """All trials except the 'skipped' ones that started after a parallel budget was full."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]


def state_counts(trials: list[Any]) -> Counter:
    """Trials by state name ("complete", "pruned", ...)."""
    return Counter(t.state.name.lower() for t in trials)


def curves(trial: Any) -> list[dict[str, float]]:
    """The per-epoch metrics of a (frozen) trial, in epoch order."""
    keys = sorted(k for k in trial.user_attrs if k.startswith(CURVE_PREFIX))
    return [trial.user_attrs[k] for k in keys]
