"""Winners that hold up (the top trials re-trained with more seeds; export picks the best
mean) and warm starts (a new study begins with an earlier study's best configs)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import tiny_study_dict
from tuner import storage as storage_lib
from tuner.api import run_study
from tuner.errors import ConfigError
from tuner.search.export import pick_trial, trial_config
from tuner.search.records import CONFIRM_OF_ATTR, CONFIRM_SEED_ATTR, WARM_START_ATTR, confirmed_ranking, n_finished
from tuner.search.study import open_study
from tuner.search.study_file import Range, validate_study
from tuner.testing import synthetic_study


def test_top_trials_are_retrained_with_other_seeds_and_export_picks_the_best_mean(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config = tiny_study_dict(
        "confirmed", training={"epochs": 1}, budget={"n_trials": 3}, confirm={"top": 2, "seeds": 1}
    )
    summary = run_study(validate_study(config), storage_url=url, log=lambda message: None)
    study = summary.study
    confirmations = [t for t in study.trials if CONFIRM_OF_ATTR in t.user_attrs]
    assert len(confirmations) == 2 and n_finished(study) == 3  # outside the budget
    for trial in confirmations:
        original = study.trials[trial.user_attrs[CONFIRM_OF_ATTR]]
        assert trial.state == TrialState.COMPLETE and trial.params == original.params
        seeds = (original.user_attrs["config"]["training"]["seed"], trial.user_attrs["config"]["training"]["seed"])
        assert seeds == (0, trial.user_attrs[CONFIRM_SEED_ATTR])
    ranking = confirmed_ranking(study)
    assert [len(c.values) for c in ranking] == [2, 2]
    assert ranking[0].mean >= ranking[1].mean
    best = pick_trial(study, None)
    assert best.number == ranking[0].number
    provenance = trial_config(study, best).provenance or {}
    assert provenance["confirmed"]["draws"] == 2
    again = run_study(validate_study(config), storage_url=url, log=lambda message: None)  # resumed: nothing to add
    assert len(again.study.trials) == len(study.trials)


def test_the_best_mean_wins_over_the_luckiest_draw():
    study = optuna.create_study(direction="maximize")
    lucky = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(lucky, -100.0)
    steady = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(steady, -101.0)
    for original, values in ((lucky, (-110.0, -112.0)), (steady, (-101.5, -102.0))):
        for seed, value in enumerate(values, start=1):
            study.enqueue_trial(original.params, user_attrs={CONFIRM_OF_ATTR: original.number, CONFIRM_SEED_ATTR: seed})
            study.tell(study.ask(), value)
    assert study.best_trial.number == lucky.number  # the single best draw
    ranking = confirmed_ranking(study)
    assert [c.number for c in ranking] == [steady.number, lucky.number]
    assert ranking[0].mean == pytest.approx(-101.5) and ranking[0].std == pytest.approx(0.5)
    assert pick_trial(study, None).number == steady.number


def test_a_new_study_starts_from_an_earlier_studys_best_configs(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    storage = storage_lib.open_storage(url)
    earlier = synthetic_study(storage, name="earlier", n_trials=12, epochs=6, fail_every=0)
    config = validate_study(tiny_study_dict("later", warm_start={"study": "earlier", "top": 3}))
    later = open_study(config, storage)
    waiting = later.get_trials(states=[TrialState.WAITING])
    warm = [t for t in waiting if WARM_START_ATTR in t.user_attrs]
    assert len(warm) == 3 and waiting[: len(warm)] == warm  # enqueued before the baseline
    ranked = sorted(
        (t for t in earlier.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value or 0.0, reverse=True
    )
    space = config.space()
    for trial, source in zip(warm, ranked[:3], strict=True):
        assert trial.user_attrs[WARM_START_ATTR] == f"earlier#{source.number}"
        params = trial.system_attrs["fixed_params"]
        for name, value in params.items():  # only what this space can hold, e.g. latent 2-8
            spec = space[name]
            assert isinstance(spec, Range) and spec.low <= value <= spec.high
            assert value == source.params[name]


def test_warm_start_from_a_missing_study_is_refused_before_anything_is_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    storage = storage_lib.open_storage(url)
    config = validate_study(tiny_study_dict("later", warm_start={"study": "nope"}))
    with pytest.raises(ConfigError, match="warm_start.study: no study named 'nope'"):
        open_study(config, storage)
    assert optuna.get_all_study_names(storage) == []
