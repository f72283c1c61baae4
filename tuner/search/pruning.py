"""Pruning that does not kill the long warm-ups a β study exists to evaluate.

The trap: validation ELBO is scored at β = 1, but a trial that is still annealing β has been
optimising a different objective until now, so at the same epoch it looks worse than a
constant-β trial. A schedule-blind median pruner therefore prunes exactly the long warm-ups.

The fix here has two parts, and an optional third:

* After the warm-up, any Optuna pruner decides as usual, but only at epochs where the trial's
  own β has been on its plateau (warm-up finished, or the hold phase of a cyclical schedule)
  for ``grace_epochs`` epochs, so the ELBO has caught up. The trial stores these epochs in
  its user attribute ``prunable_epochs`` when it starts (see search/objective.py); the wrapped
  pruner's statistics (median, rungs) stay Optuna's own.
* During the warm-up, a trial is compared only with trials that were in the same schedule
  phase at the same epoch: also warming up, with β within ``phase_tolerance`` of the same
  fraction of their max_beta. It is pruned if it is worse than the median of at least
  ``min_peers`` such trials (with the percentile pruner: outside their best ``percentile`` %).
  Bad warm-ups are still stopped early, good long ones are not judged against trials that
  already train at full β.
* With ``warmup_bound``, a warm-up without enough phase peers is judged by an optimistic
  bound instead: its validation ELBO if the KL were zero (−val_recon, which is ≥ its ELBO,
  and which a rising β only makes worse) against the same median or percentile of what every
  finished trial reported at that epoch. A warm-up whose reconstructions alone are worse than
  most trials' whole ELBO is not a long warm-up worth waiting for. Off by default: over five
  seeds it saved 6 % of the epochs and once stopped the eventual winner (README, Benchmarks).
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection

from tuner.search.records import FINISHED, PRUNABLE_ATTR, curve_key, stored_config
from tuner.search.study_file import PrunerConfig
from tuner.vae.schedules import BetaSchedule


def warmup_progress(trial: optuna.trial.FrozenTrial, epoch: int) -> float | None:
    """β at the end of ``epoch`` as a fraction of the trial's max_beta (from its stored
    curve and config), or None when unknown or when the trial is past its warm-up then."""
    if epoch in (trial.user_attrs.get(PRUNABLE_ATTR) or []):
        return None
    row = trial.user_attrs.get(curve_key(epoch))
    max_beta = stored_config(trial).get("schedule", {}).get("max_beta")
    if not row or not max_beta:
        return None
    return float(row.get("beta_end", 0.0)) / max_beta


def optimistic_elbo(trial: optuna.trial.FrozenTrial, epoch: int) -> float | None:
    """−val_recon at ``epoch``: the trial's val ELBO had its KL been zero (an upper bound on
    the ELBO at these weights), or None when the trial's curve does not hold it."""
    row = trial.user_attrs.get(curve_key(epoch))
    if not row or row.get("val_recon") is None:
        return None
    return -float(row["val_recon"])


class ScheduleAwarePruner(BasePruner):
    """Wraps ``pruner``; see the module docstring. During the warm-up a trial must be within
    the best ``percentile`` percent of its phase peers (50: their median), as the wrapped
    percentile/median pruner asks after it."""

    def __init__(
        self,
        pruner: BasePruner,
        phase_tolerance: float = 0.2,
        min_peers: int = 3,
        percentile: float = 50.0,
        warmup_bound: bool = False,
    ) -> None:
        self.pruner = pruner
        self.phase_tolerance = phase_tolerance
        self.min_peers = min_peers
        self.percentile = percentile
        self.warmup_bound = warmup_bound

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        prunable = trial.user_attrs.get(PRUNABLE_ATTR)
        if step is None or prunable is None:
            return False
        if step in prunable:
            return self.pruner.prune(study, trial)
        return self._worse_than_phase_peers(study, trial, step)

    def _worse_than_phase_peers(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial, step: int) -> bool:
        progress = warmup_progress(trial, step)
        if progress is None or step not in trial.intermediate_values:
            return False
        peers: list[float] = []
        everyone: list[float] = []
        for other in study.get_trials(deepcopy=False, states=FINISHED):
            value = other.intermediate_values.get(step)
            if value is None:
                continue
            everyone.append(value)
            other_progress = warmup_progress(other, step)
            if other_progress is not None and abs(other_progress - progress) <= self.phase_tolerance:
                peers.append(value)
        if len(peers) >= self.min_peers:
            return self._outside_best_share(study, trial.intermediate_values[step], peers)
        # The bound is on the val ELBO, the value a single-objective study maximizes.
        if not self.warmup_bound or study.direction != StudyDirection.MAXIMIZE or len(everyone) < self.min_peers:
            return False
        optimistic = optimistic_elbo(trial, step)
        return optimistic is not None and self._outside_best_share(study, optimistic, everyone)

    def _outside_best_share(self, study: optuna.study.Study, value: float, others: list[float]) -> bool:
        # Optuna's PercentilePruner convention: keep the best `percentile` percent.
        if study.direction == StudyDirection.MAXIMIZE:
            return value < float(np.percentile(others, 100 - self.percentile))
        return value > float(np.percentile(others, self.percentile))


def prunable_epochs(schedule: BetaSchedule, steps_per_epoch: int, epochs: int, grace_epochs: int) -> list[int]:
    """Epochs (1-based, as reported) at which a trial may be pruned: every training step of the
    last ``grace_epochs`` epochs (with 0: the epoch's last step) ran with β on its plateau."""
    allowed = []
    for epoch in range(1, epochs + 1):
        end = epoch * steps_per_epoch  # steps run in this epoch: [end - steps_per_epoch, end)
        first = max(0, (epoch - grace_epochs) * steps_per_epoch) if grace_epochs else end - 1
        if all(schedule.is_settled(step) for step in range(first, end)):
            allowed.append(epoch)
    return allowed


def build_pruner(config: PrunerConfig) -> BasePruner:
    if config.name == "none":
        return optuna.pruners.NopPruner()
    percentile = 50.0
    if config.name == "median":
        base: BasePruner = optuna.pruners.MedianPruner(
            n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_warmup_steps
        )
    elif config.name == "percentile":
        percentile = config.percentile
        base = optuna.pruners.PercentilePruner(
            percentile, n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_warmup_steps
        )
    elif config.name == "successive_halving":
        base = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=config.min_resource, reduction_factor=config.reduction_factor
        )
    else:
        base = optuna.pruners.HyperbandPruner(
            min_resource=config.min_resource,  # type: ignore[arg-type]  # Optuna accepts "auto" too
            reduction_factor=config.reduction_factor,
        )
    if not config.schedule_aware:
        return base
    return ScheduleAwarePruner(base, percentile=percentile, warmup_bound=config.warmup_bound)
