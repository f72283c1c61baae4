"""Report data and assembly, on synthetic studies (no training, no browser)."""

import optuna
import pytest
from optuna.trial import TrialState

from tuner.report import data
from tuner.report.html import build_report, render
from tuner.testing import synthetic_study


@pytest.fixture
def storage():
    return optuna.storages.InMemoryStorage()


def test_curves_mark_pruned_epochs_and_failures(storage):
    study = synthetic_study(storage, n_trials=20)
    curves = data.elbo_curves(study)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "the synthetic study should prune some trials"
    by_number = {c.number: c for c in curves}
    for t in pruned:
        assert by_number[t.number].pruned_at == t.user_attrs["pruned_at_epoch"] == by_number[t.number].epochs[-1]
    failed = data.failed_trials(study)
    assert len(failed) == 2 and all("diverged" in f.reason for f in failed)


def test_beta_curves_follow_each_trials_schedule(storage):
    study = synthetic_study(storage, n_trials=10)
    curves = data.beta_curves(study, top=3)
    assert len(curves) == 3
    for c in curves:
        trial = study.trials[c.number]
        assert c.beta[-1] == pytest.approx(trial.params["max_beta"], rel=1e-5)
        assert c.beta[0] == pytest.approx(0.0 if trial.params["anneal_epochs"] else trial.params["max_beta"], abs=1e-6)


def test_rate_distortion_points_and_front(storage):
    study = synthetic_study(storage, n_trials=15)
    rd = data.rate_distortion(study)
    done = {t.number: t for t in study.trials if t.state == TrialState.COMPLETE}
    for p in rd.points:
        if p.number in done:
            assert -(p.rate + p.distortion) == pytest.approx(done[p.number].value)
    front = [p for p in rd.points if p.number in rd.pareto]
    for p in front:  # no completed point dominates a front point
        assert not any(q.rate < p.rate and q.distortion < p.distortion for q in rd.points if q.state == "complete")
    assert len(rd.elbo_levels) == 5


def test_metadata_counts_states(storage):
    study = synthetic_study(storage, n_trials=14, leave_running=1)
    meta = data.metadata(study, "sqlite:///x.db")
    assert "fail 2" in meta["trials by state"] and "running 1" in meta["trials by state"]
    assert meta["budget used"].endswith("/ 14")


@pytest.mark.parametrize(
    "kwargs, must_have",
    [
        (
            {"n_trials": 20},
            ["Parameter importances", "Contour: max_beta × anneal_epochs", "Rate–distortion plane", "Failed trials"],
        ),
        ({"n_trials": 1, "fail_every": 0}, ["Optimization history", "Validation ELBO per epoch"]),
        ({"n_trials": 8, "leave_running": 1}, ["Validation ELBO per epoch", "Top trials"]),
        ({"n_trials": 8, "multi_objective": True}, ["Pareto front (distortion vs rate)", "Rate–distortion plane"]),
    ],
    ids=["pruned-and-failed", "single-trial", "still-running", "multi-objective"],
)
def test_report_builds_for_every_kind_of_study(storage, kwargs, must_have):
    study = synthetic_study(storage, **kwargs)
    report = build_report(study, "sqlite:///x.db", with_best=False)
    headings = [h for h, _ in report.sections]
    for heading in must_have:
        assert heading in headings
    page = render(report)
    assert page.count("Plotly.newPlot") == report.n_figures
    assert "<script src=" not in page.replace("<script type='text/javascript'>", "")  # plotly.js inline: opens offline
