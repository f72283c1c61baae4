"""What a trial and a study store in Optuna's user attributes, and how to read it back: the
one home of every attribute name.

Imports Optuna but no deep-learning backend, so status, export and reports can use it
without loading Keras.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import TunerError
from tuner.vae.curves import CurveRow

if TYPE_CHECKING:
    from tuner.search.study_file import StudyConfig

# Trials that count towards a study's budget.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

# On the study.
STUDY_CONFIG_ATTR = "study_config"  # the study file it was created from
WEIGHTS_REMOVED_ATTR = "weights_removed"  # trial numbers whose weights keep_weights deleted
BUDGET_ATTR = "n_trials"  # the budget of the latest run (the file's, or --n-trials / n_trials=)
# `tuner refit`'s result for trial N, on the study (a finished trial cannot take attributes):
# {"nll": nats per image, "k", "split", "n_images", "epochs", "likelihood", "bits_per_dim", "date"}.
REFIT_ATTR_PREFIX = "refit:"


def refit_attr(trial_number: int) -> str:
    return f"{REFIT_ATTR_PREFIX}{trial_number}"


def refit_record(study: Any, trial_number: int) -> dict[str, Any] | None:
    """The stored result of refitting trial ``trial_number`` of ``study``, if any."""
    record = study.user_attrs.get(refit_attr(trial_number))
    return record if isinstance(record, dict) and isinstance(record.get("nll"), (int, float)) else None


def refit_records(study: Any) -> list[tuple[int, dict[str, Any]]]:
    """Every stored refit result of ``study`` as (trial number, record), by trial number."""
    found = []
    for key in study.user_attrs:
        number = key[len(REFIT_ATTR_PREFIX) :] if key.startswith(REFIT_ATTR_PREFIX) else ""
        record = refit_record(study, int(number)) if number.isdigit() else None
        if record is not None:
            found.append((int(number), record))
    return sorted(found, key=lambda item: item[0])


# On a trial.
CONFIG_ATTR = "config"  # the trial's full TrainConfig, as JSON
SCHEDULE_ATTR = "schedule"  # the β schedule in steps (schedules.serialize)
STEPS_ATTR = "steps_per_epoch"
PRUNABLE_ATTR = "prunable_epochs"  # epochs at which the pruner may act (see pruning.py)
CURVE_PREFIX = "curve/"  # curve/0001, curve/0002, ...: one CurveRow per epoch
FAIL_ATTR = "fail_reason"
INTERRUPTED = "interrupted (Ctrl-C or stop signal)"  # the FAIL_ATTR of a trial stopped by its user
PRUNED_AT_ATTR = "pruned_at_epoch"
BASELINE_ATTR = "baseline"
CONFIRM_OF_ATTR = "confirm_of"  # a re-training of trial N with another seed (study file's confirm:)
CONFIRM_SEED_ATTR = "confirm_seed"  # 1, 2, ...: added to the config's training.seed
WARM_START_ATTR = "warm_start_from"  # "study#N": enqueued from an earlier study
TRAIN_SECONDS_ATTR = "train_seconds"  # wall time inside train(): model building, fit, validation
SURPLUS_ATTR = "skipped_surplus"  # started after the budget was full; trained nothing
# {"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "active_units",
# "n_images"} on the validation split, for a study with a disentanglement objective.
SCORES_ATTR = "disentanglement"
TRAVERSAL_ATTR = "artifact:traversal"  # artifact id of the latent-traversal picture of such a trial
WEIGHTS_ATTR = "artifact:weights"  # artifact id of the trained weights
RECON_ATTR = "artifact:reconstructions"  # artifact id of the reconstruction picture
VIEWS_ATTR = "artifact:views"  # artifact id of the trial's report views (.npz; vae.evaluation.trial_views)


def load_study(name: str, storage: optuna.storages.BaseStorage, where: str | None = None) -> optuna.Study:
    """An existing study by name, or a one-line error naming the option to fix, the storage
    searched (``where``: :func:`tuner.storage.describe` of its URL) and the studies it holds."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise no_such_study(name, [s.study_name for s in storage.get_all_studies()], where) from None


def no_such_study(name: str, names: list[str], where: str | None = None) -> TunerError:
    """The one-line error for ``--study NAME`` naming no study of the storage ``where``
    (:func:`tuner.storage.describe` of its URL), which holds ``names``."""
    listed = ", ".join(map(repr, names)) or "none"
    return TunerError(
        f"--study: no study named {name!r} in {where or 'this storage'} (studies there: {listed}); give "
        "--storage (or $TUNER_STORAGE) for another database"
    )


def stored_study_config(study: optuna.Study) -> StudyConfig:
    """The study file a study was created from (for ``tuner worker --study NAME``)."""
    from tuner.search.study_file import validate_study

    content = study.user_attrs.get(STUDY_CONFIG_ATTR)
    if content is None:
        raise TunerError(f"study {study.study_name!r} was not created by tuner; run it from its study file")
    return validate_study(content, f"study {study.study_name!r}")


def curve_key(epoch: int) -> str:
    return f"{CURVE_PREFIX}{epoch:04d}"


def real_trials(study: optuna.Study) -> list[FrozenTrial]:
    """All trials except the 'skipped' ones that started after a parallel budget was full."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]


def state_counts(trials: list[FrozenTrial]) -> Counter[str]:
    """Trials by state name ("complete", "pruned", ...)."""
    return Counter(t.state.name.lower() for t in trials)


def finished_count(counts: Counter[str]) -> int:
    """How many of the counted trials are finished (count towards the budget)."""
    return sum(counts.get(state.name.lower(), 0) for state in FINISHED)


def is_confirmation(trial: FrozenTrial) -> bool:
    return CONFIRM_OF_ATTR in trial.user_attrs


def n_finished(study: optuna.Study) -> int:
    """Finished trials that count towards the budget (re-trainings to confirm a winner do not)."""
    return sum(not is_confirmation(t) for t in study.get_trials(deepcopy=False, states=FINISHED))


@dataclass(frozen=True)
class Confirmed:
    """A configuration's completed draws: the search trial and its re-trainings (single objective)."""

    number: int  # the search trial
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def confirmed_ranking(study: optuna.Study) -> list[Confirmed]:
    """Configurations with at least one re-training, best mean first (empty without any)."""
    draws: dict[int, list[float]] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in complete:
        if is_confirmation(trial) and trial.value is not None:
            draws.setdefault(int(trial.user_attrs[CONFIRM_OF_ATTR]), []).append(trial.value)
    by_number = {t.number: t for t in complete}
    ranking = [
        Confirmed(number, (float(by_number[number].value), *values))  # type: ignore[arg-type]
        for number, values in draws.items()
        if number in by_number and by_number[number].value is not None
    ]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(ranking, key=lambda c: c.mean, reverse=maximize)


def curves(trial: FrozenTrial) -> list[CurveRow]:
    """The per-epoch metrics of a (frozen) trial, in epoch order."""
    keys = sorted(k for k in trial.user_attrs if k.startswith(CURVE_PREFIX))
    return [trial.user_attrs[k] for k in keys]


def stored_config(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's stored TrainConfig as a dict ({} when it has none)."""
    return trial.user_attrs.get(CONFIG_ATTR) or {}
