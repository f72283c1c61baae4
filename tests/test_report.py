"""Report data and assembly, on synthetic studies (no training, no browser)."""

import typing

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


def with_baseline(study, worse_by=5.0):
    """Add a completed baseline trial (what `run_study` enqueues first) to a synthetic study."""
    first = next(t for t in study.trials if t.state == TrialState.COMPLETE)
    study.add_trial(
        optuna.trial.create_trial(
            params=first.params,
            distributions=first.distributions,
            value=first.value - worse_by,
            user_attrs={**first.user_attrs, "baseline": True},
        )
    )
    return study


def test_summary_names_best_gain_and_pruning_savings(storage):
    study = with_baseline(synthetic_study(storage, n_trials=20))
    s = data.summary(study)
    assert s is not None
    best = study.best_trial
    baseline = study.trials[-1]
    assert s.best_number == best.number and s.best_value == pytest.approx(best.value)
    assert s.baseline_number == baseline.number
    assert s.gain is not None and s.gain == pytest.approx(best.value - baseline.value) and s.gain > 0
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert s.n_pruned == len(pruned) > 0
    assert s.epochs_saved == sum(6 - t.user_attrs["pruned_at_epoch"] for t in pruned)
    assert s.latent_dim == best.params["latent_dim"] and s.learning_rate == pytest.approx(best.params["learning_rate"])
    assert s.schedule is not None and s.schedule.beta[-1] == pytest.approx(best.params["max_beta"], rel=1e-5)
    assert s.diagnosis and s.test_nll is None


def test_report_opens_with_summary_and_a_headerless_fact_table(storage):
    study = with_baseline(synthetic_study(storage, n_trials=20))
    report = build_report(study, "sqlite:///x.db", with_best=False)
    assert report.sections[0][0] == "Summary"
    page = render(report)
    lead = page.index("id='summary-lead'")
    assert lead < page.index("Plotly.newPlot")  # the answer comes before the first figure
    s = data.summary(study)
    assert s is not None
    assert f"{s.best_value:.2f} nats" in page[lead : lead + 600]
    assert f"{s.gain:+.2f} nats" in page[lead : lead + 600]
    assert "<th></th>" not in page


def _figure(report, heading):
    return dict(report.sections)[heading]


def test_optuna_plots_carry_the_metric_log_axes_and_one_slice(storage):
    study = with_baseline(synthetic_study(storage, n_trials=20))
    report = build_report(study, "sqlite:///x.db", with_best=False)
    headings = [h for h, _ in report.sections]
    assert sum("Slice" in h for h in headings) == 1
    history = _figure(report, "Optimization history")
    assert history.layout.yaxis.title.text == "val ELBO (nats)"
    slices = _figure(report, "Slices: val ELBO against each parameter")
    axes = {slices.layout[k].title.text: slices.layout[k] for k in slices.layout if k.startswith("xaxis")}
    for name in ("learning_rate", "max_beta"):
        assert axes[name].type == "log" and "0.001" in axes[name].ticktext and "2" in axes[name].ticktext
    assert all(slices.layout[k].title.text for k in slices.layout if k.startswith("yaxis"))
    assert any(t.name and t.name.startswith("baseline") for t in slices.data)
    assert _figure(report, "Validation ELBO per epoch").layout.xaxis.tickformat == "d"


def test_contour_needs_enough_points(storage):
    few = build_report(synthetic_study(storage, n_trials=8), "x", with_best=False)
    assert isinstance(_figure(few, "Contour: max_beta × anneal_epochs"), str)
    assert "interpolation" in _figure(few, "Contour: max_beta × anneal_epochs")
    study = synthetic_study(optuna.storages.InMemoryStorage(), n_trials=8)
    first = next(t for t in study.trials if t.state == TrialState.COMPLETE)
    for i in range(10):  # completed copies at other points of the plane
        params = {**first.params, "max_beta": 0.1 * (i + 1), "anneal_epochs": i % 6}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=first.distributions, value=-100.0 - i, user_attrs=first.user_attrs
            )
        )
    many = build_report(study, "x", with_best=False)
    assert not isinstance(_figure(many, "Contour: max_beta × anneal_epochs"), str)


def test_one_colour_per_trial_and_a_beta_colour_bar(storage):
    from tuner.report import figures

    study = synthetic_study(storage, n_trials=20)
    report = build_report(study, "x", with_best=False)
    colours: dict[int, str] = {}
    for heading in ("Validation ELBO per epoch", "β schedules of the top trials"):
        for trace in _figure(report, heading).data:
            if trace.name and trace.name.startswith("trial "):
                number = int(trace.name.split()[1])
                assert colours.setdefault(number, trace.line.color) == trace.line.color
    assert len(set(colours.values())) > 1
    rd = _figure(report, "Rate–distortion plane")
    marker = next(t.marker for t in rd.data if t.name == "trials")
    assert marker.colorbar.title.text == "max β"
    assert "1" in marker.colorbar.ticktext and marker.colorbar.tickvals[list(marker.colorbar.ticktext).index("1")] == 0
    assert rd.layout.legend.orientation == "h"  # under the plot, away from the colour bar on its right
    below = figures.LEGEND_BELOW["y"]
    assert isinstance(below, float) and below < 0


def test_views_survive_foreign_attributes(storage, caplog):
    study = synthetic_study(storage, n_trials=8)
    trial = study.ask()
    trial.suggest_float("max_beta", 0.05, 10.0, log=True)
    trial.set_user_attr("curve/0001", "not a row")
    trial.set_user_attr("curve/0002", {"epoch": 2, "val_elbo": "NaN?"})
    trial.set_user_attr("schedule", {"class_name": "Nope"})
    trial.set_user_attr("steps_per_epoch", 10)
    trial.set_user_attr("config", {"training": {"epochs": 3}, "schedule": "oops"})
    study.tell(trial, -90.0)  # the best trial, with nothing readable
    with caplog.at_level("WARNING"):
        report = build_report(study, "x", with_best=False)
        render(report)
        from tuner.report.dashboard import vae_views

        vae_views(study, None)
    assert report.sections[0][0] == "Summary"
    assert "malformed curve rows" in caplog.text and "unreadable β schedule" in caplog.text


def test_pictures_follow_the_data_colour():
    import numpy as np

    from tuner.report.figures import picture_figure

    grey = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1), 3, axis=-1)
    assert picture_figure(grey, "g").data[0].type == "heatmap"
    rgb = grey.copy()
    rgb[..., 0] = 255
    assert picture_figure(rgb, "c").data[0].type == "image"


def test_dashboard_views_replace_elbo_curves_with_rate_and_distortion(storage):
    from tuner.report.dashboard import vae_views

    views = vae_views(synthetic_study(storage, n_trials=10), None)
    assert "vae-elbo-curves" not in views
    assert {"vae-rate-distortion-curves", "vae-beta-landscape", "vae-rate-distortion"} <= set(views)


def test_dashboard_views_are_refreshed_at_most_every_interval_and_when_the_run_ends(monkeypatch):
    from tuner.report import dashboard

    clock = [100.0]
    published: list[float] = []

    def publish(study, store):
        published.append(clock[0])
        clock[0] += 1.0  # a refresh that takes a second
        if len(published) == 2:
            raise RuntimeError("damaged attribute")  # best effort: never fails the study

    monkeypatch.setattr(dashboard.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(dashboard, "publish_vae_views", publish)
    refresh = dashboard.RefreshViews(None, min_interval_s=10.0, max_share=0.05)  # the run starts at 100
    study, trial = typing.cast(optuna.Study, object()), typing.cast(optuna.trial.FrozenTrial, object())
    refresh.flush()
    assert published == []  # no trial has finished yet
    for _ in range(5):  # trials 3 s apart, the first at 100: the first refresh comes 10 s into the run
        refresh(study, trial)
        clock[0] += 3.0
    assert published == [112.0]
    clock[0] += 10.0  # 126: 13 s after that refresh ended, short of 20 s (its 1 s is 5 %)
    refresh(study, trial)
    assert published == [112.0]
    clock[0] += 7.0
    refresh(study, trial)  # 133: 20 s after
    assert published == [112.0, 133.0]
    refresh(study, trial)
    refresh.flush()  # the run ended: the last trial is shown
    refresh.flush()  # nothing new since
    assert published == [112.0, 133.0, 134.0]


def test_multi_objective_report_leads_with_the_pareto_front(storage):
    report = build_report(synthetic_study(storage, n_trials=8, multi_objective=True), "x", with_best=False)
    first_figure = next(h for h, body in report.sections if not isinstance(body, str))
    assert first_figure == "Pareto front (distortion vs rate)"
    assert "Pareto front" in report.sections[0][1]


def test_two_studies_side_by_side(storage):
    from tuner.report.html import build_comparison

    a = with_baseline(synthetic_study(storage, name="A", n_trials=10))
    b = synthetic_study(storage, name="B", n_trials=10, seed=3)
    report = build_comparison([a, b], "x")
    page = render(report)
    assert "'A'" in report.title and "'B'" in report.title
    fronts = _figure(report, "Rate–distortion, common axes")
    assert {t.name for t in fronts.data} >= {"A: trials", "B: trials"}
    summary_a = data.summary(a)
    assert summary_a is not None and f"{summary_a.gain:+.2f} nats" in page


def test_cli_report_compares_two_studies(tmp_path):
    from typer.testing import CliRunner

    from tuner.cli import app

    url = f"sqlite:///{tmp_path / 'x.db'}"
    synthetic_study(url, name="A", n_trials=4)
    synthetic_study(url, name="B", n_trials=4, seed=1)
    out = tmp_path / "cmp.html"
    result = CliRunner().invoke(app, ["report", "--study", "A", "--study", "B", "--storage", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "studies compared" in out.read_text()


def _confirmed_study(draws: dict[int, tuple[float, ...]]) -> optuna.Study:
    """Search trials 0, 1, ... with the given values, each re-trained (confirm:) with the rest."""
    from tuner.search.records import CONFIRM_OF_ATTR, CONFIRM_SEED_ATTR

    study = optuna.create_study(direction="maximize")
    originals = []
    for number, values in draws.items():
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        assert trial.number == number
        study.tell(trial, values[0])
        originals.append((trial, values[1:]))
    for trial, rest in originals:
        for seed, value in enumerate(rest, start=1):
            study.enqueue_trial(trial.params, user_attrs={CONFIRM_OF_ATTR: trial.number, CONFIRM_SEED_ATTR: seed})
            study.tell(study.ask(), value)
    return study


def test_summary_says_when_the_top_configs_are_within_noise():
    close = data.summary(_confirmed_study({0: (-100.0, -101.0, -102.0), 1: (-100.5, -101.2, -101.6)}))
    assert close is not None and close.noise is not None and close.noise.startswith("Within noise")
    apart = data.summary(_confirmed_study({0: (-100.0, -100.2, -100.4), 1: (-110.0, -110.1, -110.3)}))
    assert apart is not None and apart.noise is not None and apart.noise.startswith("Trial 0 beats trial 1 by")
    # The summary's best is the best mean, not the luckiest single draw.
    lucky = data.summary(_confirmed_study({0: (-99.0, -110.0, -111.0), 1: (-100.0, -100.5, -100.2)}))
    assert lucky is not None and lucky.best_number == 1


def test_per_trial_lines_are_thinned_and_the_figure_says_how_many(storage):
    from tuner.report import figures

    study = synthetic_study(storage, n_trials=14)
    every = data.elbo_curves(study)
    curves, drawn = data.drawn_elbo_curves(study, limit=6)
    best = {t.number for t in data.ranked_trials(study, data.LINES_BEST)}
    assert len(curves) == 6 == len(drawn.numbers) and drawn.total == len(every) > 6
    assert drawn.best == 6 and {c.number for c in curves} <= best  # fewer lines than best trials: the best
    few = data.thinned(study, [c.number for c in every], limit=6, best=2)
    assert (
        few.best == 2
        and len(few.numbers) == 6
        and set(data.ranked_trials(study, 2)[i].number for i in (0, 1)) <= few.numbers
    )
    title = figures.elbo_curves_figure([c for c in every if c.number in few.numbers], few).layout.title.text
    assert f"6 of {len(every)} trials drawn: the best 2 and 4 others" in title
    all_of_them, drawn = data.drawn_elbo_curves(study)
    assert all_of_them == every and figures.thinned_note(drawn) == ""
