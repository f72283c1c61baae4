"""Pruning that does not kill the long warm-ups a β study exists to evaluate.

The trap: validation ELBO is scored at β = 1, but a trial that is still annealing β has been
optimising a different objective until now, so at the same epoch it may look worse than a
constant-β trial. A schedule-blind pruner would then prune exactly the long warm-ups.

Three pruners keep that promise:

* :class:`ScheduleAwareHalving`, the default (``name: successive_halving``): successive halving
  at fixed epochs (1, 4, 16, ...), every rung value read at the rung's own epoch; a trial still
  warming up at a rung is compared only with its phase peers. It trained half the epochs of an
  unpruned study where the median pruner below trained 0.64 (benchmarks/pruning.py).
* :class:`ScheduleAwareHyperband` (``name: hyperband``): brackets of that halving, each with
  its own first rung, as Optuna builds Hyperband from its successive halving.
* :class:`ScheduleAwarePruner`, around Optuna's median or percentile pruner. After the warm-up
  the wrapped pruner decides as usual, but only at epochs where
  the trial's own β has been on its plateau (warm-up finished, or the hold phase of a cyclical
  schedule) for ``grace_epochs`` epochs, so the ELBO has caught up; the trial stores these
  epochs in its user attribute ``prunable_epochs`` when it starts (see search/objective.py).
  During the warm-up a trial is compared only with trials in the same schedule phase at the
  same epoch (also warming up, β within ``phase_tolerance`` of the same fraction of their
  max_beta), and pruned if worse than the median of at least ``min_peers`` of them (with the
  percentile pruner: outside their best ``percentile`` %).

With ``warmup_bound`` (ScheduleAwarePruner only), a warm-up without enough phase peers is
judged by an optimistic bound instead: its validation ELBO if the KL were zero (−val_recon,
which is ≥ its ELBO, and which a rising β only makes worse) against the same median or
percentile of what every finished trial reported at that epoch. Off by default: over five
seeds it saved 6 % of the epochs and once stopped the eventual winner (docs/benchmarks.md).

A β controller (schedule ``control`` or ``geco``) has no warm-up known in advance: it counts as
warming up until its target is reached, which the pruners read from the trial's curve at each
epoch (:func:`target_reached`: the epoch's mean KL, or reconstruction for GECO, within 10 % of
the target, or β held at one of its bounds because the target is out of reach). Until then it
is never pruned, for no trial is in its phase; from then on it competes with every trial.
"""

from __future__ import annotations

import binascii
import math
from typing import Literal

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import TrialState

from tuner.search.records import FINISHED, PRUNABLE_ATTR, SCHEDULE_ATTR, curve_key, stored_config
from tuner.search.study_file import PrunerConfig
from tuner.vae.schedules import BetaController, BetaSchedule, deserialize


def controller_of(trial: optuna.trial.FrozenTrial) -> BetaController | None:
    """The trial's β controller, from its stored schedule; None for a schedule of the step."""
    spec = trial.user_attrs.get(SCHEDULE_ATTR)
    if not isinstance(spec, dict) or spec.get("name") not in ("control", "geco"):
        return None
    try:
        schedule = deserialize(spec)
    except (TypeError, ValueError):  # a foreign attribute: treat as a schedule of the step
        return None
    return schedule if isinstance(schedule, BetaController) else None


def target_reached(trial: optuna.trial.FrozenTrial, epoch: int) -> bool | None:
    """Whether the trial's controller had reached its target by the end of ``epoch`` (see the
    module docstring); None when the trial's β follows a schedule of the step."""
    controller = controller_of(trial)
    if controller is None:
        return None
    row = trial.user_attrs.get(curve_key(epoch))
    if not row or row.get("beta_end") is None:
        return False
    return controller.reached(controller.measured(row), float(row["beta_end"]))


def past_warmup(trial: optuna.trial.FrozenTrial, epoch: int, prunable: list[int]) -> bool:
    """Whether the trial may be judged like any other at ``epoch``: a schedule past its warm-up
    (``prunable``: the trial's stored prunable epochs), or a controller at its target."""
    reached = target_reached(trial, epoch)
    return epoch in prunable if reached is None else reached


def warmup_progress(trial: optuna.trial.FrozenTrial, epoch: int) -> float | None:
    """β at the end of ``epoch`` as a fraction of the trial's max_beta (from its stored
    curve and config), or None when unknown or when the trial is past its warm-up then."""
    if epoch in (trial.user_attrs.get(PRUNABLE_ATTR) or []) or controller_of(trial) is not None:
        return None  # a controller's phase is not a fraction of max_beta: it has no peers
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
    """Wraps ``pruner`` (median or percentile); see the module docstring. During the
    warm-up a trial must be within the best ``percentile`` percent of its phase peers (50: their
    median), as the wrapped percentile/median pruner asks after it."""

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
        if past_warmup(trial, step, prunable):
            return self.pruner.prune(study, trial)
        return self._worse_than_phase_peers(study, trial, step)

    def _worse_than_phase_peers(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial, step: int) -> bool:
        progress = warmup_progress(trial, step)
        if progress is None or step not in trial.intermediate_values:
            return False
        others = study.get_trials(deepcopy=False, states=FINISHED)
        everyone = [other.intermediate_values[step] for other in others if step in other.intermediate_values]
        peers = phase_peer_values(others, step, progress, self.phase_tolerance)
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


def phase_peer_values(
    others: list[optuna.trial.FrozenTrial], step: int, progress: float, tolerance: float
) -> list[float]:
    """Values at ``step`` of the trials that were warming up then, with β/max_beta within
    ``tolerance`` of ``progress``: the only fair company for a trial still in its warm-up."""
    peers = []
    for other in others:
        value = other.intermediate_values.get(step)
        other_progress = warmup_progress(other, step)
        if value is not None and other_progress is not None and abs(other_progress - progress) <= tolerance:
            peers.append(value)
    return peers


class ScheduleAwareHalving(BasePruner):
    """Successive halving at fixed epochs, with warm-ups judged only by their phase peers.

    Rungs sit at epochs ``min_resource``·``reduction_factor``^r. At a rung a trial continues if
    it is among the best 1/``reduction_factor`` of the values every other trial (finished or
    running) and its own reported at that same epoch, rounded down but at least one (Optuna's
    rule: with fewer than 2·``reduction_factor`` values only the best goes on). A trial still
    warming up at a rung is compared with its phase peers only (as in ScheduleAwarePruner), and
    passes the rung when it has fewer than ``min_peers`` of them.

    Why not ScheduleAwarePruner around Optuna's SuccessiveHalvingPruner: that pruner records a
    trial's rung value when it is first asked, so a trial whose rung fell in its warm-up enters
    the rung later with a later (better) value, and raises the bar for every trial after it;
    replayed on eight unpruned studies (benchmarks/pruning_replay.py) that lost up to 7 nats.
    Here every rung value is read from the curves at the rung's own epoch.
    """

    def __init__(
        self,
        min_resource: int | Literal["auto"] = 1,
        reduction_factor: int = 3,
        phase_tolerance: float = 0.2,
        min_peers: int = 3,
    ) -> None:
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.phase_tolerance = phase_tolerance
        self.min_peers = min_peers

    def first_rung(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial, epochs: int) -> int:
        """The epoch of the first rung for ``trial`` (of ``epochs`` epochs). "auto" puts it at one
        hundredth of the trial's own length, Optuna's rule of thumb (Optuna takes the length from
        a finished trial and prunes nothing until one exists)."""
        return max(1, epochs // 100) if self.min_resource == "auto" else self.min_resource

    def is_rung(self, epoch: int, first_rung: int) -> bool:
        rung = first_rung
        while rung < epoch:
            rung *= self.reduction_factor
        return rung == epoch

    def competitors(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> list[optuna.trial.FrozenTrial]:
        """Every other trial, finished or running."""
        states = (*FINISHED, TrialState.RUNNING)
        return [other for other in study.get_trials(deepcopy=False, states=states) if other.number != trial.number]

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        prunable = trial.user_attrs.get(PRUNABLE_ATTR)
        if step is None or prunable is None:
            return False
        epochs = trial_epochs(trial)
        if not self.is_rung(step, self.first_rung(study, trial, epochs)):
            return False
        others = self.competitors(study, trial)
        if past_warmup(trial, step, prunable):
            competing = [other.intermediate_values[step] for other in others if step in other.intermediate_values]
        else:
            progress = warmup_progress(trial, step)
            if progress is None:
                return False
            competing = phase_peer_values(others, step, progress, self.phase_tolerance)
            if len(competing) < self.min_peers:
                return False
        value = trial.intermediate_values[step]
        maximize = study.direction == StudyDirection.MAXIMIZE
        ranked = sorted([value, *competing], reverse=maximize)
        keep = max(1, len(ranked) // self.reduction_factor)
        return value < ranked[keep - 1] if maximize else value > ranked[keep - 1]


class ScheduleAwareHyperband(ScheduleAwareHalving):
    """Hyperband (Li et al. 2018) as brackets of :class:`ScheduleAwareHalving`, the way Optuna's
    ``HyperbandPruner`` builds it from its successive halving: bracket b's first rung is at
    ``min_resource``·``reduction_factor``^b, a trial is ranked only against trials of its own
    bracket, and trials are dealt to brackets by Optuna's budgets and hash (a trial's bracket
    depends only on the study's name, its number and its length in epochs).

    Why not Optuna's ``HyperbandPruner`` inside :class:`ScheduleAwarePruner`: its brackets are
    Optuna's successive halving, which records a deferred warm-up's rung value late (see
    :class:`ScheduleAwareHalving`). Unlike Optuna's, the sampler still sees every trial.
    """

    def brackets(self, first_rung: int, epochs: int) -> list[int]:
        """The number of trials out of every sum(budgets) that go to each bracket: Optuna's
        ``ceil(n·η^s / (s + 1))`` for bracket n − 1 − s of n = floor(log_η(epochs / first)) + 1."""
        n = math.floor(math.log(max(epochs, first_rung) / first_rung, self.reduction_factor) + 1e-9) + 1
        return [math.ceil(n * self.reduction_factor ** (n - 1 - b) / (n - b)) for b in range(n)]

    def bracket(self, study_name: str, number: int, first_rung: int, epochs: int) -> int:
        budgets = self.brackets(first_rung, epochs)
        position = binascii.crc32(f"{study_name}_{number}".encode()) % sum(budgets)
        for bracket, budget in enumerate(budgets):
            position -= budget
            if position < 0:
                return bracket
        raise AssertionError("unreachable: position < sum(budgets)")

    def bracket_of(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> int:
        epochs = trial_epochs(trial)
        return self.bracket(study.study_name, trial.number, super().first_rung(study, trial, epochs), epochs)

    def first_rung(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial, epochs: int) -> int:
        return super().first_rung(study, trial, epochs) * self.reduction_factor ** self.bracket_of(study, trial)

    def competitors(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> list[optuna.trial.FrozenTrial]:
        mine = self.bracket_of(study, trial)
        return [other for other in super().competitors(study, trial) if self.bracket_of(study, other) == mine]


def trial_epochs(trial: optuna.trial.FrozenTrial) -> int:
    """The trial's planned length in epochs, from its stored config (else what it reported)."""
    return int(stored_config(trial).get("training", {}).get("epochs") or trial.last_step or 1)


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
        factor = config.reduction_factor or 4  # Optuna's default
        if config.schedule_aware:
            return ScheduleAwareHalving(config.min_resource, factor)
        base = optuna.pruners.SuccessiveHalvingPruner(min_resource=config.min_resource, reduction_factor=factor)
    else:
        factor = config.reduction_factor or 3  # Optuna's default
        if config.schedule_aware:
            return ScheduleAwareHyperband(config.min_resource, factor)
        base = optuna.pruners.HyperbandPruner(
            min_resource=config.min_resource,  # type: ignore[arg-type]  # Optuna accepts "auto" too
            reduction_factor=factor,
        )
    if not config.schedule_aware:
        return base
    return ScheduleAwarePruner(base, percentile=percentile, warmup_bound=config.warmup_bound)
