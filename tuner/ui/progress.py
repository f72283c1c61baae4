"""Console views of a running study: a line per finished trial, and the running trial's epoch,
val ELBO and time left.

On a terminal the view is one live area (rich): a bar over the study's budget that starts
from the trials already finished, and a bar over the running trial's epochs. Anywhere else
(a pipe, a Slurm or `tuner launch` log) it prints one plain line per epoch and per trial, so
a log shows progress without control characters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tuner.search.records import FAIL_ATTR, PRUNED_AT_ATTR, SCORES_ATTR, n_finished
from tuner.ui.console import fmt, out
from tuner.vae.curves import CurveRow


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
        scores = trial.user_attrs.get(SCORES_ATTR)
        if isinstance(scores, dict):  # a disentanglement study: the value is a score (and val ELBO)
            result = (f"val ELBO {fmt(values[0])} " if len(values) > 1 else "") + "MIG {} DCI {} SAP {}".format(
                *(fmt(scores.get(key), 3) for key in ("mig", "dci_disentanglement", "sap"))
            )
    elif trial.state == TrialState.PRUNED:
        result = f"pruned at epoch {trial.user_attrs.get(PRUNED_AT_ATTR, trial.last_step)}"
    else:
        result = trial.user_attrs.get(FAIL_ATTR, "failed")
    return f"{head} {result}  [{seconds:.1f} s]  {format_params(trial.params)}"


def best_text(study: optuna.Study, pareto_size: int | None = None) -> str:
    """The best value and its trial, or the Pareto front's size (``pareto_size`` when the
    caller counted it without loading the trials)."""
    if len(study.directions) > 1:
        return f"Pareto front: {pareto_size if pareto_size is not None else len(study.best_trials)} trials"
    try:
        metric = (study.metric_names or ["val_elbo"])[0]
        name = {"val_elbo": "val ELBO", "dci": "DCI"}.get(metric, metric.upper())
        return f"best {name} {fmt(study.best_value)} (trial {study.best_trial.number})"
    except ValueError:
        return "no completed trial yet"


def _bars(console: Console, live: bool, transient: bool) -> Progress:
    """Bars with a description, count, elapsed time and ETA; drawn only when ``live``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    eta = (TextColumn("eta"), TimeRemainingColumn())
    return Progress(*columns, *eta, console=console, transient=transient, disable=not live)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class StudyProgress:
    """The progress view of ``tuner run`` / ``tuner worker``. Pass :meth:`open` as the
    runner's ``on_open``, :meth:`epoch` as an epoch callback and the object itself as a trial
    callback. ``live`` defaults to whether the console is a terminal."""

    def __init__(self, total: int | None, console: Console = out, live: bool | None = None) -> None:
        self.total = total
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.finished = 0
        self._trial_seconds: list[float] = []  # trials that ran to their end in this process
        self._epoch_started = time.monotonic()
        self.progress = _bars(console, self.live, transient=False)
        self.study_task = self.progress.add_task("trials", total=total, completed=0)
        self.trial_task = self.progress.add_task("waiting for the first trial", total=None, visible=False)

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def open(self, study: optuna.Study) -> None:
        """Count the trials that earlier runs and other workers already finished."""
        self.finished = n_finished(study)
        self.progress.update(self.study_task, completed=self.finished, description=best_text(study))

    def epoch(self, number: int, epoch: int, epochs: int, row: CurveRow) -> None:
        now = time.monotonic()
        if epoch == 1:
            self._epoch_started = now - float(row.get("epoch_time", 0.0))
        per_epoch = (now - self._epoch_started) / epoch
        trial_left = per_epoch * (epochs - epoch)
        if self.live:
            description = f"trial {number}: val ELBO {fmt(row.get('val_elbo'))}"
            if epoch == 1:  # a new trial: restart the bar's clock
                self.progress.reset(self.trial_task, total=epochs, description=description, visible=True)
            self.progress.update(self.trial_task, description=description, total=epochs, completed=epoch)
            return
        line = (
            f"trial {number:>3} epoch {epoch}/{epochs}  val ELBO {fmt(row.get('val_elbo'))}  "
            f"β {fmt(row.get('beta_end'), 3)}  ({fmt(row.get('epoch_time'), 1)} s; trial eta {_duration(trial_left)}"
        )
        study_left = self._study_left(trial_left)
        self.console.print(
            line + (f", study eta {_duration(study_left)})" if study_left is not None else ")"), markup=False
        )

    def _study_left(self, running_trial_left: float) -> float | None:
        """Seconds until the budget is met, from the mean duration of this process's trials."""
        if self.total is None or not self._trial_seconds:
            return None
        mean = sum(self._trial_seconds) / len(self._trial_seconds)
        after_this = max(0, self.total - self.finished - 1)
        return running_trial_left + after_this * mean

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.duration and trial.state == TrialState.COMPLETE:
            self._trial_seconds.append(trial.duration.total_seconds())
        self.console.print(trial_line(trial), markup=False)
        self.finished = n_finished(study)  # other workers' trials count too
        self.progress.update(self.study_task, completed=self.finished, description=best_text(study))
        self.progress.update(self.trial_task, visible=False)


class TaskProgress:
    """Progress of one long computation (the IWAE bound of ``tuner evaluate`` and ``refit``):
    a bar with an ETA on a terminal; elsewhere (a log) a plain line every tenth of the way or
    every :attr:`LOG_EVERY_S` seconds, whichever comes first. Pass :meth:`update` as the
    computation's ``on_progress(done, total)``.

    Once the second update arrives, one line says how long the whole computation will take,
    measured between the first and second updates (the first one also holds compilation),
    followed by ``hint`` (how to shorten it) when given.
    """

    LOG_EVERY_S = 60.0

    def __init__(
        self,
        description: str,
        unit: str,
        console: Console = out,
        live: bool | None = None,
        hint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description = description
        self.unit = unit
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.hint = hint
        self.clock = clock
        self._next_line = 0.1
        self._started = self._last_line = clock()
        self._first: tuple[int, float] | None = None  # (done, time) at the first update
        self._estimated = False
        self.progress = _bars(console, self.live, transient=True)
        self.task = self.progress.add_task(description, total=None)

    def __enter__(self) -> TaskProgress:
        self._started = self._last_line = self.clock()
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def expected_seconds(self, done: int, total: int, now: float) -> float | None:
        """The whole computation's expected duration: the time to the first update plus the
        rest at the rate measured since then (None until a second update)."""
        if self._first is None or done <= self._first[0]:
            return None
        first_done, first_time = self._first
        rate = (now - first_time) / (done - first_done)
        return (first_time - self._started) + rate * (total - first_done)

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if self._first is None:
            self._first = (done, now)
        elif not self._estimated and done < total:
            expected = self.expected_seconds(done, total, now)
            if expected is not None:
                self._estimated = True
                hint = f"; {self.hint}" if self.hint else ""
                self.console.print(
                    f"{self.description}: expected to take about {_duration(expected)} on this machine{hint}",
                    markup=False,
                )
        if self.live:
            self.progress.update(self.task, completed=done, total=total)
            return
        if done >= total * self._next_line or done == total or now - self._last_line >= self.LOG_EVERY_S:
            elapsed = now - self._started
            expected = self.expected_seconds(done, total, now)
            left = max(0.0, expected - elapsed) if expected is not None else elapsed / done * (total - done)
            self.console.print(
                f"{self.description}: {done:,}/{total:,} {self.unit} ({done / total:.0%}; {_duration(elapsed)}, "
                f"eta {_duration(left)})",
                markup=False,
            )
            self._last_line = now
            while self._next_line <= done / total:
                self._next_line += 0.1
