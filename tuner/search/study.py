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

import optuna
from optuna.storages import BaseStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState

from tuner import storage as storage_lib
from tuner.errors import FatalError, TunerError
from tuner.retrying_storage import lost_storage
from tuner.search.artifacts import keep_best_weights
from tuner.search.objective import EpochCallback, Objective
from tuner.search.pruning import build_pruner
from tuner.search.records import (
    BASELINE_ATTR,
    FAIL_ATTR,
    FINISHED,
    STUDY_CONFIG_ATTR,
    SURPLUS_ATTR,
    n_finished,
)
from tuner.search.space import baseline_params
from tuner.search.study_file import StudyConfig
from tuner.storage import ArtifactStore
from tuner.vae.data import Splits

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


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
        return loaded
    created.set_user_attr(STUDY_CONFIG_ATTR, study.model_dump(mode="json", exclude_none=True))
    created.set_metric_names(["val_elbo"] if study.objective == "elbo" else ["distortion", "rate"])
    if study.enqueue_baseline:
        created.enqueue_trial(baseline_params(study), user_attrs={BASELINE_ATTR: True})
    return created


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
    objective.splits(study_cfg.base_config().data, splits)
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
    if n_trials is not None and before >= n_trials:
        return RunSummary(study, before, before, 0.0)
    failures = ConsecutiveFailures(study_cfg.budget.max_consecutive_failures)
    all_callbacks: list[TrialCallback] = [failures]
    if n_trials is not None:
        all_callbacks.append(MaxTrialsCallback(n_trials, states=FINISHED))
    if study_cfg.artifacts.keep_weights and study_cfg.objective == "elbo":
        keep = study_cfg.artifacts.keep_weights
        all_callbacks.append(lambda s, t: keep_best_weights(s, store, keep))
    all_callbacks += callbacks or []

    def optimize() -> None:
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            return
        try:
            study.optimize(objective, timeout=left, callbacks=all_callbacks, catch=(Exception,), gc_after_trial=True)
        except Exception as exc:
            # Optuna may replace our StorageError with an error of its own while it cleans up.
            lost = lost_storage(exc)
            if lost is None:
                raise
            raise lost from None

    optimize()
    if heartbeats and heartbeat is not None and n_trials is not None:
        _finish_budget(study, n_trials, heartbeat, optimize, failures, lambda: _timed_out(start, timeout), log)
    if failures.tripped:
        raise FatalError(
            f"study {study_cfg.name!r} stopped after {failures.count} failed trials in a row; last reason: "
            f"{failures.last_reason}. Narrow the search space (e.g. lower learning_rate.high or max_beta.high)"
        )
    return RunSummary(study, before, n_finished(study), time.monotonic() - start)
