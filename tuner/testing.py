"""Synthetic studies for tests and benchmarks: trials made with ask/tell, no training.

Each trial stores what a real one does (config, schedule, per-epoch curves), with values from
a smooth made-up response surface, so reports and dashboards can be exercised in seconds.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import optuna
from optuna.storages import BaseStorage

from tuner.search.pruning import ScheduleAwarePruner
from tuner.search.records import (
    CONFIG_ATTR,
    FAIL_ATTR,
    PRUNABLE_ATTR,
    PRUNED_AT_ATTR,
    SCHEDULE_ATTR,
    STEPS_ATTR,
    STUDY_CONFIG_ATTR,
    curve_key,
)
from tuner.vae.curves import CurveRow
from tuner.vae.schedules import from_epochs, serialize


def synthetic_study(
    storage: BaseStorage | str,
    name: str = "synthetic",
    n_trials: int = 20,
    epochs: int = 6,
    multi_objective: bool = False,
    fail_every: int = 7,
    leave_running: int = 0,
    seed: int = 0,
) -> optuna.Study:
    rng = np.random.default_rng(seed)
    directions: list[Literal["minimize", "maximize"]] = ["minimize", "minimize"] if multi_objective else ["maximize"]
    pruner = (
        optuna.pruners.NopPruner()
        if multi_objective
        else ScheduleAwarePruner(optuna.pruners.MedianPruner(n_startup_trials=3))
    )
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=pruner,
    )
    study.set_user_attr(STUDY_CONFIG_ATTR, {"budget": {"n_trials": n_trials}})
    steps_per_epoch = 100
    for i in range(n_trials + leave_running):
        trial = study.ask()
        max_beta = trial.suggest_float("max_beta", 0.05, 10.0, log=True)
        anneal = trial.suggest_int("anneal_epochs", 0, epochs)
        latent = trial.suggest_int("latent_dim", 2, 128, log=True)
        lr = trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
        schedule = from_epochs(
            "linear", max_beta=max_beta, steps_per_epoch=steps_per_epoch, total_epochs=epochs, anneal_epochs=anneal
        )
        config = {
            "training": {"epochs": epochs},
            "schedule": {"name": "linear", "max_beta": max_beta, "anneal_epochs": anneal},
            "model": {"latent_dim": latent},
        }
        trial.set_user_attr(CONFIG_ATTR, config)
        trial.set_user_attr(SCHEDULE_ATTR, serialize(schedule))
        trial.set_user_attr(STEPS_ATTR, steps_per_epoch)
        trial.set_user_attr(PRUNABLE_ATTR, list(range(anneal + 1, epochs + 1)))
        if fail_every and i % fail_every == fail_every - 1:
            trial.set_user_attr(FAIL_ATTR, f"loss diverged (nan) at step {50 * i} with learning rate {lr:.3g}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        # Rate falls and distortion rises with β; a mid latent size and lr are best.
        rate = 30.0 / (1.0 + max_beta) + 0.05 * latent
        distortion = 70.0 + 12.0 * math.log1p(max_beta) + 4.0 * abs(math.log(lr / 1e-3))
        pruned_at = None
        for epoch in range(1, epochs + 1):
            slack = 60.0 * math.exp(-epoch / 2) + rng.normal(0, 0.5)
            recon, kl = distortion + slack, rate
            beta_end = float(schedule.values([epoch * steps_per_epoch])[0])
            row: CurveRow = {
                "epoch": epoch,
                "loss": recon + beta_end * kl,
                "recon": recon,
                "kl": kl,
                "elbo": -(recon + kl),
                "beta": beta_end,
                "beta_end": beta_end,
                "val_loss": recon + kl,
                "val_recon": recon,
                "val_kl": kl,
                "val_elbo": -(recon + kl),
                "epoch_time": 1.0,
            }
            trial.set_user_attr(curve_key(epoch), row)
            if not multi_objective:
                trial.report(-(recon + kl), epoch)
                if i >= n_trials:  # left running: stops mid-way
                    break
                if trial.should_prune():
                    pruned_at = epoch
                    break
        if i >= n_trials:
            continue
        if pruned_at is not None:
            trial.set_user_attr(PRUNED_AT_ATTR, pruned_at)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif multi_objective:
            study.tell(trial, [distortion + 60.0 * math.exp(-epochs / 2), rate])
        else:
            study.tell(trial, -(recon + kl))
    return study
