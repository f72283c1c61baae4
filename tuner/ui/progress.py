"""Console views of a running study: a line per finished trial and a progress bar."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from tuner.search.records import FAIL_ATTR, FINISHED, PRUNED_AT_ATTR
from tuner.ui.console import fmt, out


def format_params(params: dict[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        parts.append(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


def trial_line(trial: FrozenTrial) -> str:
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    head = f"trial {trial.number:>3} {trial.state.name.lower():<8}"
    if trial.state == TrialState.COMPLETE:
        values = trial.values or []
        result = f"val ELBO {fmt(values[0])}" if len(values) == 1 else "distortion {} rate {}".format(*map(fmt, values))
    elif trial.state == TrialState.PRUNED:
        result = f"pruned at epoch {trial.user_attrs.get(PRUNED_AT_ATTR, trial.last_step)}"
    else:
        result = trial.user_attrs.get(FAIL_ATTR, "failed")
    return f"{head} {result}  [{seconds:.1f} s]  {format_params(trial.params)}"


def best_text(study: optuna.Study) -> str:
    if len(study.directions) > 1:
        return f"Pareto front: {len(study.best_trials)} trials"
    try:
        return f"best val ELBO {fmt(study.best_value)} (trial {study.best_trial.number})"
    except ValueError:
        return "no completed trial yet"


class StudyProgress:
    """A progress bar over the trial budget, with the best value so far, as a trial callback."""

    def __init__(self, total: int | None, done: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=False,
        )
        self.task = self.progress.add_task("trials", total=total, completed=done)

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.progress.console.print(trial_line(trial), markup=False)
        finished = trial.state in FINISHED
        self.progress.update(self.task, advance=1 if finished else 0, description=best_text(study))
