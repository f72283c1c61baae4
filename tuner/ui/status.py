"""Text summary of the studies in a storage (``tuner status``)."""

from __future__ import annotations

import contextlib
from collections import Counter

import optuna
from optuna.storages import BaseStorage

from tuner import storage as storage_lib
from tuner.search.records import SURPLUS_ATTR, no_such_study, real_trials, refit_records, state_counts
from tuner.ui.progress import best_text, format_params


def printable(name: str) -> str:
    """A study name as it can be printed: another tool may have stored control characters or
    terminal escapes in one (this project refuses them), which must not reach the terminal."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def refit_rows(study: optuna.Study) -> list[str]:
    """One line per trial that `tuner refit` scored: its test NLL."""
    rows = []
    for number, record in refit_records(study):
        bits = record.get("bits_per_dim")
        per_dim = f", {bits:.4f} bits/dim" if isinstance(bits, (int, float)) else ""
        rows.append(
            f"  refit of trial {number}: {record.get('split', 'test')} NLL {record['nll']:.2f} nats "
            f"(IWAE k={record.get('k')} on {record.get('n_images')} images, {record.get('epochs')} epochs, "
            f"{record.get('likelihood')}{per_dim})"
        )
    return rows


def study_summary(storage: BaseStorage, study: optuna.Study) -> tuple[Counter[str], str]:
    """The study's trials by state, "skipped" surplus trials left out (they trained nothing),
    and its best value or Pareto front, as :func:`best_text` words them.

    A database counts them with one query and finds the best trial by another, so the cost
    stays flat as the study grows; other storages load the trials (``storage`` is the one the
    study was loaded from)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    counts = storage_lib.count_trials(storage, study_id, exclude_attr=SURPLUS_ATTR)
    if counts is None:
        counts = state_counts(real_trials(study))
    multi = len(study.directions) > 1
    return counts, best_text(study, storage_lib.pareto_front_size(storage, study_id) if multi else None)


def study_rows(storage: BaseStorage, only: str | None = None, where: str | None = None) -> list[str]:
    """The lines of ``tuner status``: every study of ``storage`` (or only the study ``only``;
    ``where`` names the storage when there is no such study)."""
    names = optuna.get_all_study_names(storage)
    if only is not None:
        if only not in names:
            raise no_such_study(only, names, where)  # repr() escapes control characters too
        names = [only]
    rows = []
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        counts, best = study_summary(storage, study)
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        rows.append(f"{printable(name)}: {states}; {best}")
        if len(study.directions) == 1:
            with contextlib.suppress(ValueError):
                rows.append(f"  best params: {format_params(study.best_trial.params)}")
        rows += refit_rows(study)
    return rows
