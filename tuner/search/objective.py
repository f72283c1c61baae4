"""One trial: sample a config, train it, stream its curves to storage, report and prune."""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from tuner.config import DataConfig
from tuner.errors import DivergenceError, SurplusTrial
from tuner.search.artifacts import upload_trial_artifacts
from tuner.search.disentanglement import EpochScores, final_scores
from tuner.search.pruning import prunable_epochs
from tuner.search.records import (
    BASELINE_ATTR,
    CONFIG_ATTR,
    CONFIRM_SEED_ATTR,
    FAIL_ATTR,
    FINISHED,
    INTERRUPTED,
    PRUNABLE_ATTR,
    PRUNED_AT_ATTR,
    SCHEDULE_ATTR,
    STEPS_ATTR,
    SURPLUS_ATTR,
    TRAIN_SECONDS_ATTR,
    WARM_START_ATTR,
    curve_key,
    is_confirmation,
)
from tuner.search.space import baseline_params, sample_config
from tuner.search.study_file import StudyConfig
from tuner.search.takeover import check_still_running
from tuner.storage import ArtifactStore
from tuner.vae.curves import CurveRow
from tuner.vae.data import Splits, load_splits
from tuner.vae.schedules import serialize
from tuner.vae.training import prepare, train

# Called after every epoch of a trial with (trial number, epoch from 1, epochs, that epoch's
# metrics): how a progress view follows the running trial without the study drawing.
EpochCallback = Callable[[int, int, int, CurveRow], None]


def budget_reached(trial: optuna.Trial, budget: int, count_running: bool = True) -> bool:
    """Whether the finished trials plus those started before this one fill the budget.

    Ordering by trial id makes the decision the same in every worker without a lock, so the
    study ends with exactly ``budget`` finished trials (see docs/distributed.md).
    Without heartbeats (journal storage) a dead worker's trial stays RUNNING forever, so
    running trials are not counted there: the budget may then overshoot by up to one trial
    per other worker instead of never being reached."""
    ahead = 0
    for other in trial.study.get_trials(deepcopy=False):
        if is_confirmation(other):  # re-trainings of a winner are outside the budget
            continue
        if other.state in FINISHED:
            ahead += 1
        elif count_running and other.state == TrialState.RUNNING and other._trial_id < trial._trial_id:
            ahead += 1
    return ahead >= budget


class Objective:
    """Callable for ``study.optimize``. Loads the data once per process, not once per trial."""

    def __init__(
        self,
        study: StudyConfig,
        artifact_store: ArtifactStore | None = None,
        budget: int | None = None,
        count_running: bool = True,
        epoch_callbacks: list[EpochCallback] | None = None,
    ) -> None:
        self.study = study
        self.artifact_store = artifact_store
        self.budget = budget
        self.count_running = count_running
        self.epoch_callbacks = list(epoch_callbacks or [])
        self._splits: dict[str, Splits] = {}
        self.current: optuna.Trial | None = None  # the trial being run, for tuner.search.takeover

    def splits(self, data: DataConfig, loaded: Splits | None = None) -> Splits:
        """The splits of ``data``, loaded once per process (``loaded``: already loaded)."""
        key = data.model_dump_json()
        if key not in self._splits:
            self._splits[key] = loaded if loaded is not None else load_splits(data)
        return self._splits[key]

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        self.current = trial
        confirming = CONFIRM_SEED_ATTR in trial.user_attrs
        if self.budget is not None and not confirming and budget_reached(trial, self.budget, self.count_running):
            # Another worker's trial took the last slot of the budget while this one was being
            # created: record it as skipped (it trained nothing) and stop this worker.
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.set_user_attr(FAIL_ATTR, f"skipped: the budget of {self.budget} trials is taken by other workers")
            trial.study.stop()
            raise SurplusTrial()
        try:
            return self._run(trial)
        except (optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):
            raise  # the latter: another worker failed this trial as stale; write nothing more
        except DivergenceError as exc:
            trial.set_user_attr(FAIL_ATTR, str(exc))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(FAIL_ATTR, INTERRUPTED)
            self.requeue_if_queued(trial)
            raise
        except Exception as exc:  # any other failure fails this trial only, with its reason
            trial.set_user_attr(FAIL_ATTR, f"{type(exc).__name__}: {exc}"[:500])
            raise

    def requeue_if_queued(self, trial: optuna.Trial) -> None:
        """Queue an interrupted baseline or warm-start trial again: they were queued on purpose,
        and the study owes them a run when it resumes. Done here, by the process that ran the
        trial, and not by whoever resumes (several workers resuming together would each queue
        a copy). Not for a trial that failed for a reason of its own."""
        if trial.user_attrs.get(BASELINE_ATTR):
            trial.study.enqueue_trial(baseline_params(self.study), user_attrs={BASELINE_ATTR: True})
        elif WARM_START_ATTR in trial.user_attrs:
            # Its parameters that fit the space were fixed; the others were sampled: keep them all.
            trial.study.enqueue_trial(trial.params, user_attrs={WARM_START_ATTR: trial.user_attrs[WARM_START_ATTR]})

    def _run(self, trial: optuna.Trial) -> float | tuple[float, float]:
        config = sample_config(trial, self.study)
        confirm_seed = trial.user_attrs.get(CONFIRM_SEED_ATTR)
        if confirm_seed is not None:  # a winner re-trained with another seed (confirm:)
            seed = config.training.seed + int(confirm_seed)
            config = config.model_copy(update={"training": config.training.model_copy(update={"seed": seed})})
        splits = self.splits(config.data)
        # The likelihood that "auto" picks from the data is what the trial stores and exports.
        plan = prepare(config, splits)
        config, steps, epochs = plan.config, plan.steps_per_epoch, plan.epochs
        single = self.study.single_objective
        metric = self.study.disentanglement_metric  # mig, dci, sap: the trial's value is that score
        trial.set_user_attr(CONFIG_ATTR, config.model_dump(mode="json", exclude_none=True))
        trial.set_user_attr(SCHEDULE_ATTR, serialize(plan.schedule))
        trial.set_user_attr(STEPS_ATTR, steps)
        if single:
            grace = self.study.pruner.grace_epochs
            trial.set_user_attr(PRUNABLE_ATTR, prunable_epochs(plan.schedule, steps, epochs, grace))

        def on_epoch(epoch: int, metrics: CurveRow) -> None:  # epoch from 1
            trial.set_user_attr(curve_key(epoch), metrics)
            for callback in self.epoch_callbacks:
                callback(trial.number, epoch, epochs, metrics)
            # Multi-objective trials cannot be reported or pruned in Optuna. The last epoch is
            # never pruned: the trial has already paid for all of its training by then.
            if single and metric is None:
                trial.report(metrics["val_elbo"], epoch)
                if epoch < epochs and confirm_seed is None and trial.should_prune():
                    trial.set_user_attr(PRUNED_AT_ATTR, epoch)
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        scoring = [EpochScores(trial, metric, splits, epochs, confirm_seed is None)] if single and metric else []
        started = time.perf_counter()
        result = train(plan, splits, hooks=[on_epoch], callbacks=scoring)
        trial.set_user_attr(TRAIN_SECONDS_ATTR, time.perf_counter() - started)
        last = result.history[-1]
        if self.artifact_store is not None:
            check_still_running(trial)  # files are written outside the storage's own check
            upload_trial_artifacts(trial, self.artifact_store, result.model, splits.val)
        if metric:
            score = final_scores(trial, result.model, splits, self.artifact_store).value(metric)
            return score if single else (last["val_elbo"], score)
        if single:
            return last["val_elbo"]
        return last["val_recon"], last["val_kl"]
