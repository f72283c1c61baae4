"""Trials queued on purpose: a warm start from an earlier study's best trials, and the
re-trainings with other seeds that confirm a study's winners (``confirm:``)."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from tuner.errors import ConfigError
from tuner.search.records import CONFIRM_OF_ATTR, CONFIRM_SEED_ATTR, is_confirmation
from tuner.search.space import fits
from tuner.search.study_file import ConfirmConfig, StudyConfig, WarmStartConfig


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
