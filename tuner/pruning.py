"""Pruning that does not kill the long warm-ups a β study exists to evaluate.

The trap: validation ELBO is scored at β = 1, but a trial that is still annealing β has been
optimising a different objective until now, so at the same epoch it looks worse than a
constant-β trial. A schedule-blind median pruner therefore prunes exactly the long warm-ups.

The fix here is to gate any Optuna pruner: a trial may only be pruned at epochs where its own
β has reached its plateau (warm-up finished, or the hold phase of a cyclical schedule) plus
``grace_epochs`` to let the ELBO catch up. The trial stores these epochs in its user attribute
``prunable_epochs`` when it starts (see objective.py); the gate compares nothing else, so the
wrapped pruner's statistics (median, rungs) stay Optuna's own.
"""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner

from tuner.schedules import BetaSchedule
from tuner.study_config import PrunerConfig

PRUNABLE_ATTR = "prunable_epochs"


class ScheduleAwarePruner(BasePruner):
    def __init__(self, pruner: BasePruner) -> None:
        self.pruner = pruner

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        prunable = trial.user_attrs.get(PRUNABLE_ATTR)
        if step is None or prunable is None or step not in prunable:
            return False
        return self.pruner.prune(study, trial)


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
    if config.name == "median":
        base: BasePruner = optuna.pruners.MedianPruner(
            n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_warmup_steps
        )
    elif config.name == "successive_halving":
        base = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=config.min_resource, reduction_factor=config.reduction_factor
        )
    else:
        base = optuna.pruners.HyperbandPruner(min_resource=config.min_resource, reduction_factor=config.reduction_factor)
    return ScheduleAwarePruner(base) if config.schedule_aware else base
