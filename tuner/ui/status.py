"""Text summary of the studies in a storage (``tuner status``)."""

from __future__ import annotations

import contextlib

import optuna
from optuna.storages import BaseStorage

from tuner.errors import TunerError
from tuner.search.records import real_trials, state_counts
from tuner.ui.progress import best_text, format_params


def study_rows(storage: BaseStorage, only: str | None = None) -> list[str]:
    names = optuna.get_all_study_names(storage)
    if only is not None:
        if only not in names:
            raise TunerError(f"--study: no study named {only!r}; studies here: {', '.join(names) or 'none'}")
        names = [only]
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        counts = state_counts(real_trials(study))  # "skipped" surplus trials trained nothing
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        rows.append(f"{name}: {states}; {best_text(study)}")
        if len(study.directions) == 1:
            with contextlib.suppress(ValueError):
                rows.append(f"  best params: {format_params(study.best_trial.params)}")
    return rows
