"""Create or resume a study and run trials until its global budget is reached.

The budget counts finished trials (complete or pruned) in the storage, whoever ran them, so
one process, many local workers or workers on many machines all stop at ``n_trials``.
Failed trials do not count; ``max_consecutive_failures`` stops a study that cannot succeed.
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
from optuna.trial import FrozenTrial, TrialState

from tuner import storage as storage_lib
from tuner.errors import ConfigError, FatalError, TunerError
from tuner.retrying_storage import lost_storage
from tuner.search.artifacts import check_artifact_folder, keep_best_weights
from tuner.search.objective import EpochCallback, Objective
from tuner.search.pruning import build_pruner
from tuner.search.records import (
    BASELINE_ATTR,
    CONFIRM_OF_ATTR,
    CONFIRM_SEED_ATTR,
    FAIL_ATTR,
    FINISHED,
    STUDY_CONFIG_ATTR,
    SURPLUS_ATTR,
    WARM_START_ATTR,
    is_confirmation,
    n_finished,
)
from tuner.search.space import baseline_params, fits
from tuner.search.study_file import ConfirmConfig, StudyConfig, WarmStartConfig
from tuner.storage import ArtifactStore
from tuner.vae.data import Splits

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def check_builder(study: StudyConfig, splits: Splits) -> None:
    """Build the base config's model once with the user's ``model.builder``: an import error,
    a bad signature or networks of the wrong shape are one ConfigError before anything is
    stored, not a failed trial each."""
    from tuner.vae.training import build_model

    height, width, channels = splits.train.shape[1:]
    build_model(study.base_config(), (height, width, channels), steps_per_epoch=1)


def build_sampler(study: StudyConfig, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler. Parallel workers pass different ``seed_offset``s: with one seed
    they would all propose the same parameters (TPE's constant liar, on by default in
    Optuna 5, then spreads the running trials apart)."""
    cfg = study.sampler
    seed = None if cfg.seed is None else cfg.seed + seed_offset
    if cfg.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=cfg.n_startup_trials)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials)


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
    created.set_metric_names(["val_elbo"] if study.objective == "elbo" else ["distortion", "rate"])
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


def warm_start_params(
    study: StudyConfig, storage: BaseStorage, warm: WarmStartConfig
) -> list[tuple[str, dict[str, Any]]]:
    """("source#N", parameters) of the ``warm.top`` best completed trials of the earlier study,
    each reduced to the parameters that this study's space can hold (the sampler draws the
    others). Raises ConfigError when there is no such study."""
    try:
        source = optuna.load_study(study_name=warm.study, storage=storage)
    except KeyError:
        names = ", ".join(optuna.get_all_study_names(storage)) or "none"
        raise ConfigError(
            f"warm_start.study: no study named {warm.study!r} in this storage (studies: {names})"
        ) from None
    if len(source.directions) > 1:
        raise ConfigError(f"warm_start.study: {warm.study!r} has several objectives; warm-start from a single one")
    space = study.space()
    done = [t for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    maximize = source.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(done, key=lambda t: float(t.value or 0.0), reverse=maximize)[: warm.top]
    return [
        (f"{warm.study}#{t.number}", {k: v for k, v in t.params.items() if k in space and fits(space[k], v)})
        for t in ranked
    ]


def _stop_at_budget(n_trials: int) -> TrialCallback:
    """Stop once the study holds ``n_trials`` finished trials that count towards the budget
    (Optuna's MaxTrialsCallback would count re-trainings of a winner too)."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if n_finished(study) >= n_trials:
            study.stop()

    return callback


def enqueue_confirmations(study: optuna.Study, confirm: ConfirmConfig) -> int:
    """Enqueue re-trainings of the ``confirm.top`` best search trials, ``confirm.seeds`` more
    seeds each, except those already there (a resumed run, another worker); returns how many
    of them are waiting to run."""
    trials = study.get_trials(deepcopy=False)
    present = {
        (t.user_attrs[CONFIRM_OF_ATTR], t.user_attrs.get(CONFIRM_SEED_ATTR))
        for t in trials
        if is_confirmation(t) and t.state != TrialState.FAIL
    }
    search = [t for t in trials if t.state == TrialState.COMPLETE and not is_confirmation(t) and t.value is not None]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    for trial in sorted(search, key=lambda t: float(t.value or 0.0), reverse=maximize)[: confirm.top]:
        for seed in range(1, confirm.seeds + 1):
            if (trial.number, seed) not in present:
                study.enqueue_trial(trial.params, user_attrs={CONFIRM_OF_ATTR: trial.number, CONFIRM_SEED_ATTR: seed})
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return sum(is_confirmation(t) for t in waiting)


def _timed_out(start: float, timeout: float | None) -> bool:
    return timeout is not None and time.monotonic() - start >= timeout


def _finish_budget(
    study: optuna.Study,
    n_trials: int,
    heartbeat: storage_lib.Heartbeat,
    optimize: Callable[[], None],
    failures: ConsecutiveFailures,
    timed_out: Callable[[], bool],
    log: Callable[[str], object],
) -> None:
    """Stay until the budget is met when only other workers' running trials fill it.

    A worker stops when finished plus earlier running trials fill the budget (the exact global
    budget). If one of those running trials belongs to a worker that died (SIGKILL, a Slurm
    requeue), leaving would strand the study: nobody is left to notice the missing heartbeat.
    So the worker waits, fails trials whose heartbeat is older than the grace period (Optuna
    re-queues them with the same parameters), and runs what is then missing."""
    said = False
    while not failures.tripped and not timed_out() and n_finished(study) < n_trials:
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if running and not waiting:
            if not said:
                log(
                    f"waiting for {len(running)} running trial(s) of other workers; a stale one is retried "
                    f"after {heartbeat.grace} s without heartbeat"
                )
                said = True
            time.sleep(heartbeat.interval)
            optuna.storages.fail_stale_trials(study)
            continue
        optimize()


class ConsecutiveFailures:
    """Stops the study after ``limit`` failed trials in a row (this process's trials)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.last_reason = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get(SURPLUS_ATTR):
            return
        if trial.state == TrialState.FAIL:
            self.count += 1
            self.last_reason = trial.user_attrs.get(FAIL_ATTR, "unknown")
            if self.count >= self.limit:
                study.stop()
        elif trial.state in FINISHED:
            self.count = 0

    @property
    def tripped(self) -> bool:
        return self.count >= self.limit


@dataclass
class RunSummary:
    study: optuna.Study
    finished_before: int
    finished_after: int
    elapsed_s: float


def run_study(
    study_cfg: StudyConfig,
    storage_url: str,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    artifacts_path: str | None = None,
    artifact_store: ArtifactStore | None = None,
    heartbeat: storage_lib.Heartbeat | None = None,
    callbacks: list[TrialCallback] | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    on_open: Callable[[optuna.Study], None] | None = None,
    splits: Splits | None = None,
    seed_offset: int = 0,
    db_retry_s: float = 0.0,
    log: Callable[[str], object] = print,
) -> RunSummary:
    """Run trials of ``study_cfg`` until the study holds ``n_trials`` finished trials (or the
    timeout passes).

    Artifacts go to ``artifact_store``, else to the folder that ``artifacts_path``, the study
    file or the storage URL names. ``callbacks`` run after every trial, ``epoch_callbacks``
    after every epoch, ``on_open`` once the study is created or loaded (the CLI passes its
    progress view and the dashboard's views here: this runner never draws). ``splits``: the
    study's data, when the caller has loaded it already. ``db_retry_s``: ride out a lost
    database connection for that long (see :mod:`tuner.retrying_storage`), saying so via ``log``.

    Raises:
        FatalError: too many trials failed in a row.
        StorageError: the storage cannot be opened.
    """
    n_trials = study_cfg.n_trials(n_trials)
    timeout = timeout if timeout is not None else study_cfg.budget.timeout
    heartbeats = heartbeat is not None and storage_lib.supports_heartbeat(storage_url)
    objective = Objective(study_cfg, None, budget=n_trials, count_running=heartbeats, epoch_callbacks=epoch_callbacks)
    # The data is loaded and checked before anything is stored: a dataset that cannot be read
    # is the user's mistake (one line, nothing created), not five failed trials.
    loaded = objective.splits(study_cfg.base_config().data, splits)
    if study_cfg.model.builder:  # the user's code: imported, called and checked once, up front
        check_builder(study_cfg, loaded)
    if artifact_store is None:
        check_artifact_folder(storage_lib.artifacts_dir(storage_url, artifacts_path or study_cfg.artifacts.path))
    local = storage_lib.sqlite_path(storage_url) or storage_lib.journal_path(storage_url)
    if study_cfg.warm_start and local is not None and not local.exists():  # refused before it is created
        raise ConfigError(
            f"warm_start.study: no study named {study_cfg.warm_start.study!r}: {local} does not exist yet; "
            "run the earlier study first, or point --storage at the storage that holds it"
        )
    storage = storage_lib.open_storage(
        storage_url, heartbeat=heartbeat if heartbeats else None, retry_s=db_retry_s, log=log
    )
    # Failed trials are reported by our own progress lines with their reason; Optuna would
    # also log each with a traceback, which users mistake for a crash.
    optuna.logging.set_verbosity(logging.ERROR)
    study = open_study(study_cfg, storage, seed_offset)
    store = artifact_store or storage_lib.artifact_store(storage_url, artifacts_path or study_cfg.artifacts.path)
    objective.artifact_store = store
    if on_open is not None:
        on_open(study)
    before = n_finished(study)
    start = time.monotonic()
    failures = ConsecutiveFailures(study_cfg.budget.max_consecutive_failures)
    common: list[TrialCallback] = [failures]
    if study_cfg.artifacts.keep_weights and study_cfg.objective == "elbo":
        keep = study_cfg.artifacts.keep_weights
        common.append(lambda s, t: keep_best_weights(s, store, keep))
    common += callbacks or []
    budgeted = common if n_trials is None else [*common, _stop_at_budget(n_trials)]

    def optimize(trial_callbacks: list[TrialCallback] = budgeted, n: int | None = None) -> None:
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            return
        try:
            study.optimize(
                objective, n_trials=n, timeout=left, callbacks=trial_callbacks, catch=(Exception,), gc_after_trial=True
            )
        except Exception as exc:
            # Optuna may replace our StorageError with an error of its own while it cleans up.
            lost = lost_storage(exc)
            if lost is None:
                raise
            raise lost from None

    if n_trials is None or before < n_trials:
        optimize()
        if heartbeats and heartbeat is not None and n_trials is not None:
            _finish_budget(study, n_trials, heartbeat, optimize, failures, lambda: _timed_out(start, timeout), log)
    search_done = n_trials is not None and n_finished(study) >= n_trials
    if study_cfg.confirm and study_cfg.objective == "elbo" and search_done and not failures.tripped:
        pending = enqueue_confirmations(study, study_cfg.confirm)
        if pending:
            log(f"confirming the top {study_cfg.confirm.top} trials with {study_cfg.confirm.seeds} more seed(s) each")
            optimize(common, n=pending)
    if failures.tripped:
        raise FatalError(
            f"study {study_cfg.name!r} stopped after {failures.count} failed trials in a row; last reason: "
            f"{failures.last_reason}. Narrow the search space (e.g. lower learning_rate.high or max_beta.high)"
        )
    return RunSummary(study, before, n_finished(study), time.monotonic() - start)
