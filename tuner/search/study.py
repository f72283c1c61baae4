"""Create or resume a study and run trials until its global budget is reached.

:func:`run_study` takes an opened storage and artifact store: :mod:`tuner.api` resolves,
checks and opens them, once, for ``tuner run``, ``tuner worker`` and the Python API. The
budget's rules are in :mod:`tuner.search.budget`, the sampler in :mod:`tuner.search.samplers`,
warm starts and confirmations in :mod:`tuner.search.warm_start`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from tuner.errors import ConfigError, FatalError, TunerError
from tuner.search.artifacts import keep_best_weights
from tuner.search.budget import ConsecutiveFailures, TrialCallback, finish_budget, stop_at_budget, timed_out
from tuner.search.disentanglement import check_factors
from tuner.search.objective import EpochCallback, Objective
from tuner.search.pruning import build_pruner
from tuner.search.records import BASELINE_ATTR, BUDGET_ATTR, STUDY_CONFIG_ATTR, WARM_START_ATTR, n_finished
from tuner.search.samplers import build_sampler
from tuner.search.space import baseline_params
from tuner.search.study_file import StudyConfig
from tuner.search.takeover import taken_over, taken_over_message
from tuner.search.warm_start import enqueue_confirmations, warm_start_params
from tuner.storage import ArtifactStore, Heartbeat, lost_storage
from tuner.vae.data import Splits
from tuner.vae.shapes import filters_for_data

__all__ = ["RunSummary", "TrialCallback", "check_builder", "open_study", "run_study"]


def check_builder(study: StudyConfig, splits: Splits) -> None:
    """Build the base config's model once with the user's ``model.builder``: an import error,
    a bad signature or networks of the wrong shape are one ConfigError before anything is
    stored, not a failed trial each."""
    from tuner.vae.training import build_model

    height, width, channels = splits.train.shape[1:]
    build_model(study.base_config(), (height, width, channels), steps_per_epoch=1)


def open_study(study: StudyConfig, storage: BaseStorage, seed_offset: int = 0) -> optuna.Study:
    """Create the study, or load it if it exists. Safe when many workers start at once: the
    database's unique study name decides who creates it, and only the creator enqueues the
    baseline trial."""
    sampler, pruner = build_sampler(study, seed_offset), build_pruner(study.pruner)
    warm = warm_start_params(study, storage, study.warm_start) if study.warm_start else []
    try:
        created = optuna.create_study(
            study_name=study.name, storage=storage, sampler=sampler, pruner=pruner, directions=study.directions
        )
    except optuna.exceptions.DuplicatedStudyError:
        loaded = optuna.load_study(study_name=study.name, storage=storage, sampler=sampler, pruner=pruner)
        if len(loaded.directions) != len(study.directions):
            raise TunerError(
                f"study {study.name!r} already exists with {len(loaded.directions)} objective(s); "
                "pick another name (--study-name) for a different objective"
            ) from None
        check_unchanged(loaded, study)
        return loaded
    created.set_user_attr(STUDY_CONFIG_ATTR, study.model_dump(mode="json", exclude_none=True))
    created.set_metric_names(study.metric_names)
    for source, params in warm:  # the earlier study's best first
        created.enqueue_trial(params, user_attrs={WARM_START_ATTR: source})
    if study.enqueue_baseline:
        created.enqueue_trial(baseline_params(study), user_attrs={BASELINE_ATTR: True})
    return created


# What makes the trials of a study comparable: resumed with other values, one study would mix
# trials trained on other data, for other epochs or in another space. The budget, sampler,
# pruner, artifacts, confirmation and baseline may change between runs.
FIXED_SECTIONS = ("objective", "data", "model", "schedule", "training", "search")


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}").items()}
    return {prefix: value}


def _comparable(config: StudyConfig) -> dict[str, Any]:
    flat = {
        k: v
        for section, content in config.model_dump(mode="json", include=set(FIXED_SECTIONS)).items()
        for k, v in _flat(content, section).items()
    }
    # `filters: auto` (the default) equals the widths it resolves to where the data section
    # gives the image size: a study stored with [32, 64] on MNIST resumes with a file that
    # leaves filters at auto.
    if "model.filters" in flat:
        flat["model.filters"] = filters_for_data(
            flat["model.filters"], flat.get("data.dataset", ""), flat.get("data.size")
        )
    # Where the data lies may differ between machines and runs (a relative path is made
    # absolute from the study file's folder); the file it names may not.
    if isinstance(flat.get("data.path"), str):
        flat["data.path"] = Path(flat["data.path"]).name
    return flat


def changed_fields(stored: StudyConfig, given: StudyConfig) -> list[tuple[str, Any, Any]]:
    """(field, stored value, given value) for each field of FIXED_SECTIONS that differs (for
    ``data.path``: the file's name)."""
    old, new = _comparable(stored), _comparable(given)
    return [(k, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]


def check_unchanged(existing: optuna.Study, study: StudyConfig) -> None:
    """ConfigError when ``study`` (the file being run) changes what the existing study's trials
    were trained with; a study stored by an older version that no longer validates is not
    compared (its trials say what they ran)."""
    from tuner.search.records import stored_study_config

    try:
        stored = stored_study_config(existing)
    except TunerError:
        return
    changed = changed_fields(stored, study)
    if changed:
        field, old, new = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ConfigError(
            f"study {study.name!r} already exists with {field} = {old!r}, the file says {new!r}{more}; "
            "restore the file, or run the changed study under a new name (--study-name NEW)"
        )


@dataclass
class RunSummary:
    study: optuna.Study
    finished_before: int
    finished_after: int
    elapsed_s: float


def run_study(
    study_config: StudyConfig,
    storage: BaseStorage,
    artifact_store: ArtifactStore,
    splits: Splits,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    heartbeat: Heartbeat | None = None,
    callbacks: list[TrialCallback] | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    on_open: Callable[[optuna.Study], None] | None = None,
    seed_offset: int = 0,
    log: Callable[[str], object] = print,
) -> RunSummary:
    """Run trials of ``study_config`` until the study holds ``n_trials`` finished trials (or
    the timeout passes), on an opened ``storage``; artifacts go to ``artifact_store``.

    ``splits``: the study's data, loaded and checked by the caller. ``heartbeat``: the
    settings the storage was opened with, None where it keeps none (journal files): running
    trials then do not count towards the budget. ``callbacks`` run after every trial,
    ``epoch_callbacks`` after every epoch, ``on_open`` once the study is created or loaded
    (the CLI passes its progress view and the dashboard's views here: this runner never
    draws). Parallel workers pass different ``seed_offset``s (see :func:`build_sampler`).

    Raises:
        FatalError: too many trials failed in a row.
        StorageError: the storage was lost for longer than it retries.
    """
    n_trials = study_config.n_trials(n_trials)
    timeout = timeout if timeout is not None else study_config.budget.timeout
    objective = Objective(
        study_config,
        artifact_store,
        budget=n_trials,
        count_running=heartbeat is not None,
        epoch_callbacks=epoch_callbacks,
    )
    check_factors(study_config, splits)  # a disentanglement objective on data without factors
    objective.splits(study_config.base_config().data, splits)
    # Failed trials are reported by our own progress lines with their reason; Optuna would
    # also log each with a traceback, which users mistake for a crash.
    optuna.logging.set_verbosity(logging.ERROR)
    study = open_study(study_config, storage, seed_offset)
    if n_trials is not None and study.user_attrs.get(BUDGET_ATTR) != n_trials:
        study.set_user_attr(BUDGET_ATTR, n_trials)  # the budget in force, for the report
    if on_open is not None:
        on_open(study)
    before = n_finished(study)
    start = time.monotonic()
    failures = ConsecutiveFailures(study_config.budget.max_consecutive_failures)
    common: list[TrialCallback] = [failures]
    if study_config.artifacts.keep_weights and study_config.single_objective:
        keep = study_config.artifacts.keep_weights
        common.append(lambda s, t: keep_best_weights(s, artifact_store, keep))
    common += callbacks or []
    budgeted = common if n_trials is None else [*common, stop_at_budget(n_trials)]

    def optimize(trial_callbacks: list[TrialCallback] = budgeted, n: int | None = None) -> None:
        ran: list[int] = []  # trials told by this call, for `n` after a takeover
        counted = [*trial_callbacks, lambda s, t: ran.append(t.number)]
        while True:
            left = None if timeout is None else timeout - (time.monotonic() - start)
            if left is not None and left <= 0:
                return
            objective.current = None
            try:
                study.optimize(
                    objective,
                    n_trials=None if n is None else n - len(ran),
                    timeout=left,
                    callbacks=counted,
                    catch=(Exception,),
                    gc_after_trial=True,
                )
                return
            except Exception as exc:
                # Optuna may replace our StorageError with an error of its own while it cleans up.
                lost = lost_storage(exc)
                if lost is not None:
                    raise lost from None
                number = taken_over(study, objective.current, exc)
                if number is None:
                    raise
                # This worker was paused past the grace period; its trial was retried elsewhere.
                log(taken_over_message(number, heartbeat.grace if heartbeat is not None else None))
                if n is not None and len(ran) >= n:
                    return

    if n_trials is None or before < n_trials:
        optimize()
        if heartbeat is not None and n_trials is not None:
            finish_budget(study, n_trials, heartbeat, optimize, failures, lambda: timed_out(start, timeout), log)
    search_done = n_trials is not None and n_finished(study) >= n_trials
    if study_config.confirm and study_config.single_objective and search_done and not failures.tripped:
        pending = enqueue_confirmations(study, study_config.confirm)
        if pending:
            log(
                f"confirming the top {study_config.confirm.top} trials with {study_config.confirm.seeds} more seed(s) each"
            )
            optimize(common, n=pending)
    if failures.tripped:
        raise FatalError(
            f"study {study_config.name!r} stopped after {failures.count} failed trials in a row; last reason: "
            f"{failures.last_reason}. Narrow the search space (e.g. lower learning_rate.high or max_beta.high)"
        )
    return RunSummary(study, before, n_finished(study), time.monotonic() - start)
