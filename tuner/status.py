"""Text summary of the studies in a storage (``tuner status``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import optuna

from tuner.progress import best_text, format_params


def study_rows(storage: Any, only: str | None = None) -> list[str]:
    names = optuna.get_all_study_names(storage)
    if only is not None:
        if only not in names:
            from tuner.errors import TunerError

            raise TunerError(f"--study: no study named {only!r}; studies here: {', '.join(names) or 'none'}")
        names = [only]
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        counts = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        rows.append(f"{name}: {states}; {best_text(study)}")
        if len(study.directions) == 1:
            try:
                rows.append(f"  best params: {format_params(study.best_trial.params)}")
            except ValueError:
                pass
    return rows
