"""`tuner status` counts by the database (one aggregate query) and says exactly what it said
when it loaded every trial: surplus trials left out, running trials and refits shown, the
Pareto front of a multi-objective study."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tuner import storage as storage_lib
from tuner.search.records import SURPLUS_ATTR, refit_attr
from tuner.testing import synthetic_study
from tuner.ui import status


def _loaded_rows(storage, monkeypatch):
    """The rows as the loading path gives them (the storage-level summary switched off)."""
    with monkeypatch.context() as m:
        m.setattr(storage_lib, "count_trials", lambda *a, **k: None)
        m.setattr(storage_lib, "pareto_front_size", lambda *a, **k: None)
        return status.study_rows(storage)


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study = synthetic_study(url, name="single", n_trials=12, leave_running=1)
    surplus = study.ask()  # started after the budget was full: trained nothing
    surplus.set_user_attr(SURPLUS_ATTR, True)
    study.tell(surplus, state=TrialState.PRUNED)
    falsy = study.ask()  # a false flag counts, as `not user_attrs.get(...)` says
    falsy.set_user_attr(SURPLUS_ATTR, False)
    study.tell(falsy, 1.0)
    study.set_user_attr(refit_attr(0), {"nll": 95.5, "k": 50, "n_images": 100, "epochs": 3, "likelihood": "bernoulli"})
    synthetic_study(url, name="front", n_trials=9, multi_objective=True)
    optuna.create_study(study_name="empty", storage=url)
    return url


def test_status_rows_by_the_database_match_the_loaded_trials(url, monkeypatch):
    storage = storage_lib.open_storage(url, read_only=True)
    fast = status.study_rows(storage)
    assert fast == _loaded_rows(storage, monkeypatch)
    single = next(r for r in fast if r.startswith("single:"))
    assert "running" in single and "complete" in single and "(trial" in single
    assert any(r.startswith("front:") and "Pareto front:" in r for r in fast)
    assert "empty: no trials; no completed trial yet" in fast
    assert any("refit of trial 0" in r for r in fast)


def test_counts_leave_out_surplus_trials_and_count_in_sql(url):
    storage = storage_lib.open_storage(url, read_only=True)
    study = optuna.load_study(study_name="single", storage=storage)
    counts = storage_lib.count_trials(storage, storage.get_study_id_from_name("single"), exclude_attr=SURPLUS_ATTR)
    every = storage_lib.count_trials(storage, storage.get_study_id_from_name("single"))
    assert counts is not None and every is not None
    assert sum(every.values()) == len(study.trials) == sum(counts.values()) + 1
    assert every["pruned"] == counts["pruned"] + 1


def test_pareto_front_size_is_optunas(url):
    storage = storage_lib.open_storage(url, read_only=True)
    study = optuna.load_study(study_name="front", storage=storage)
    assert storage_lib.pareto_front_size(storage, storage.get_study_id_from_name("front")) == len(study.best_trials)


def test_storages_without_sql_load_the_trials():
    storage = optuna.storages.InMemoryStorage()
    synthetic_study(storage, name="memory", n_trials=5)
    assert storage_lib.count_trials(storage, storage.get_study_id_from_name("memory")) is None
    assert status.study_rows(storage)[0].startswith("memory: ")
