"""Turn an Optuna trial into a TrainConfig: sample the study's search space.

The only place that calls Optuna's ``suggest_*``; the VAE layer receives the sampled
:class:`~tuner.config.TrainConfig` and never sees a trial (the study decides, the objective
runs, the model trains: KerasTuner's separation of roles).
"""

from __future__ import annotations

from typing import Any

import optuna

from tuner.config import TrainConfig
from tuner.search.study_file import (
    FAMILY_PARAMS,
    INTEGER_PARAMS,
    OBJECTIVE_PARAMS,
    TARGETS,
    Choices,
    Range,
    StudyConfig,
)

# Sampled first, because whether other parameters exist depends on it.
ORDER = ["schedule", *[name for name in TARGETS if name != "schedule"]]
BASELINE = {"max_beta": 1.0, "anneal_epochs": 0, "latent_dim": 16, "learning_rate": 1e-3, "schedule": "constant"}


def suggest(trial: optuna.Trial, name: str, spec: Any) -> Any:
    if isinstance(spec, Choices):
        return trial.suggest_categorical(name, spec.choices)
    if isinstance(spec, Range):
        if name in INTEGER_PARAMS:
            return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1))
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
    return spec  # fixed value


def sample_config(trial: optuna.Trial, study: StudyConfig) -> TrainConfig:
    """The trial's full training config. Parameters that do not apply to the sampled schedule
    family (e.g. n_cycles for a linear warm-up) or objective (iwae_k for elbo) are not sampled
    at all."""
    space = study.space()
    content = study.base_config().model_dump()
    family = content["schedule"]["name"]
    for name in ORDER:
        if name not in space:
            continue
        if name in FAMILY_PARAMS and family not in FAMILY_PARAMS[name]:
            continue
        if name in OBJECTIVE_PARAMS and content["training"]["objective"] not in OBJECTIVE_PARAMS[name]:
            continue
        value = suggest(trial, name, space[name])
        section, field = TARGETS[name]
        content[section][field] = value
        if name == "schedule":
            family = value
    return TrainConfig.model_validate(content)


def fits(spec: Any, value: Any) -> bool:
    """Whether a searched parameter (a range or choices) can take ``value``; False for a fixed
    value, which is not sampled."""
    if isinstance(spec, Range):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and spec.low <= value <= spec.high
    return isinstance(spec, Choices) and value in spec.choices


def baseline_params(study: StudyConfig) -> dict[str, Any]:
    """The common default (constant β = 1, latent 16, Adam 1e-3) as parameters of this space;
    only entries that the space can hold are kept."""
    space = study.space()
    params = {name: value for name, value in BASELINE.items() if name in space and fits(space[name], value)}
    if "schedule" not in space and study.schedule.name != "constant" and "anneal_epochs" in params:
        params["anneal_epochs"] = 0  # a linear/sigmoid family with no annealing is constant β
    return params
