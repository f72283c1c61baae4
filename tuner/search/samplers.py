"""The study's sampler, built from the study file's ``sampler`` section."""

from __future__ import annotations

import optuna

from tuner.search.study_file import StudyConfig


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
