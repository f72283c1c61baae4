"""The disentanglement scores on constructed codes, against values known from their definitions."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from tuner.search.study_file import StudyConfig
from tuner.vae import disentanglement as dis


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    """Every combination of three independent factors with 3, 4 and 5 values (60 rows, 10 times)."""
    grid = np.array(list(itertools.product(range(3), range(4), range(5))))
    return np.tile(grid, (10, 1))


def ideal(factors: np.ndarray, seed: int = 0) -> np.ndarray:
    """One unit per factor, with noise far below a bin: a perfectly disentangled code."""
    rng = np.random.default_rng(seed)
    return factors + rng.normal(0, 0.01, factors.shape)


def test_an_ideal_code_scores_one(factors: np.ndarray) -> None:
    assert dis.mig(factors.astype(float), factors) == pytest.approx(1.0, abs=1e-9)
    codes = ideal(factors)
    # Noise that straddles a bin edge gives the other factors a sliver of information.
    assert dis.mig(codes, factors) == pytest.approx(1.0, abs=0.01)
    assert dis.sap(codes, factors) == pytest.approx(1.0, abs=1e-3)
    d = dis.dci(codes, factors)
    assert d.disentanglement > 0.9 and d.completeness > 0.9 and d.informativeness > 0.99


def test_permuting_and_scaling_units_changes_nothing(factors: np.ndarray) -> None:
    codes = ideal(factors)
    moved = codes[:, [2, 0, 1]] * np.array([3.0, -0.5, 10.0]) + 7.0
    assert dis.mig(moved, factors) == pytest.approx(dis.mig(codes, factors), abs=1e-9)
    assert dis.sap(moved, factors) == pytest.approx(dis.sap(codes, factors), abs=1e-9)


def test_noise_scores_about_zero(factors: np.ndarray) -> None:
    codes = np.random.default_rng(1).normal(size=(len(factors), 6))
    assert dis.mig(codes, factors) < 0.05
    assert dis.sap(codes, factors) < 0.02
    d = dis.dci(codes, factors)
    assert d.disentanglement < 0.15 and d.completeness < 0.15
    assert d.informativeness < 0.5  # about chance (1/3 to 1/5)


def test_a_duplicated_unit_loses_its_factor_gap(factors: np.ndarray) -> None:
    """Two copies of the first factor's unit: that factor's gap is 0, the other two keep 1,
    so MIG and SAP are 2/3; DCI completeness falls for that factor (its importance is split
    in two: 1 - log(2)/log(4) = 0.5), disentanglement does not."""
    codes = ideal(factors)
    twice = np.column_stack([codes, codes[:, 0] + np.random.default_rng(2).normal(0, 0.01, len(codes))])
    assert dis.mig(twice, factors) == pytest.approx(2 / 3, abs=0.01)
    assert dis.sap(twice, factors) == pytest.approx(2 / 3, abs=1e-3)
    d = dis.dci(twice, factors)
    assert d.disentanglement > 0.9
    assert d.completeness == pytest.approx((0.5 + 1 + 1) / 3, abs=0.1)


def test_mig_matches_a_hand_computed_value() -> None:
    """A unit that holds a binary factor with one flip in four: its MI against an empty
    second unit over the factor's entropy is 1 - H(1/4) / log 2 nats."""
    factor = np.array([0, 0, 0, 0, 1, 1, 1, 1] * 25)
    unit = factor.astype(float).copy()
    unit[::4] = 1 - unit[::4]  # every fourth value flipped
    codes = np.column_stack([unit, np.zeros_like(unit)])
    p = 0.25
    expected = 1 - (-(p * math.log(p) + (1 - p) * math.log(1 - p))) / math.log(2)
    assert dis.mig(codes, factor[:, None]) == pytest.approx(expected, abs=1e-9)


def test_constant_factors_are_left_out(factors: np.ndarray) -> None:
    with_constant = np.column_stack([factors, np.zeros(len(factors), dtype=int)])
    codes = ideal(factors)
    assert dis.mig(codes, with_constant) == pytest.approx(dis.mig(codes, factors))


def test_active_units_count_units_that_vary(factors: np.ndarray) -> None:
    codes = np.column_stack(
        [ideal(factors), np.full(len(factors), 0.3), np.random.default_rng(3).normal(0, 0.05, len(factors))]
    )
    assert dis.active_units(codes) == 3


def test_scores_bundle_every_metric_and_pick_the_objective(factors: np.ndarray) -> None:
    scores = dis.score(ideal(factors), factors)
    assert scores.value("mig") == scores.mig and scores.value("dci") == scores.dci_disentanglement
    assert scores.value("sap") == scores.sap
    assert set(scores.as_dict()) >= {"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"}
    assert scores.active_units == 3 and scores.n_images == len(factors)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="one N"):
        dis.mig(np.zeros((10, 2)), np.zeros((9, 1), dtype=int))


# A study on generated sprites whose trials train in about a second each.
SPRITES_STUDY = {
    "data": {
        "dataset": "sprites",
        "sprites": {"shapes": 2, "scales": 2, "orientations": 2, "positions": 12, "image_size": 32},
        "n_val": 150,
    },
    "model": {"filters": [8, 16], "latent_dim": 4},
    "training": {"epochs": 2, "batch_size": 64, "seed": 0},
    "search": {"max_beta": {"low": 1.0, "high": 8.0, "log": True}, "latent_dim": 4, "anneal_epochs": 0},
    "schedule": {"name": "constant"},
}


def _sprites_study(**extra: Any) -> StudyConfig:
    from tests.helpers import tiny_study_dict
    from tuner.search.study_file import validate_study

    return validate_study(tiny_study_dict("sprites", **SPRITES_STUDY, **extra))


def test_a_study_maximises_a_disentanglement_score_end_to_end(tmp_path) -> None:
    from optuna.trial import TrialState

    from tuner.api import run_study
    from tuner.search.export import trial_config
    from tuner.search.records import SCORES_ATTR, TRAVERSAL_ATTR

    config = _sprites_study(objective={"name": "disentanglement", "metric": "mig"}, pruner={"name": "none"})
    study = run_study(config, storage_url=f"sqlite:///{tmp_path / 'db.sqlite'}", log=lambda _: None).study
    assert study.directions == [__import__("optuna").study.StudyDirection.MAXIMIZE]
    assert study.metric_names == ["mig"]
    done = study.get_trials(states=[TrialState.COMPLETE])
    assert len(done) == 2
    for trial in done:
        scores = trial.user_attrs[SCORES_ATTR]
        assert trial.value == scores["mig"] and 0 <= scores["mig"] <= 1
        assert scores["n_images"] == 150 and 0 <= scores["active_units"] <= 4
        assert set(scores) >= {"dci_disentanglement", "dci_completeness", "dci_informativeness", "sap"}
        assert trial.intermediate_values and 1 in trial.intermediate_values  # reported for the pruner
        assert TRAVERSAL_ATTR in trial.user_attrs
    provenance = trial_config(study, study.best_trial).provenance
    assert provenance is not None and provenance["values"] == {"mig": study.best_trial.value}
    # The report shows every trial's scores, the scores against β and the best trial's traversal.
    from tuner import storage as storage_lib
    from tuner.report.html import build_report

    store = storage_lib.artifact_store(f"sqlite:///{tmp_path / 'db.sqlite'}", None)
    headings = [heading for heading, _ in build_report(study, "db", store, with_best=False).sections]
    best = max(done, key=lambda t: t.value or 0).number
    assert {"Disentanglement scores per trial", "Disentanglement against β"} <= set(headings)
    assert f"Best trial {best}: latent traversal" in headings
    # Progress and status lines name the score, not a val ELBO.
    from tuner.ui.progress import best_text, trial_line

    assert best_text(study).startswith(f"best MIG {study.best_value:.2f} (trial {best})")
    assert "MIG " in trial_line(done[0]) and "val ELBO" not in trial_line(done[0])


def test_elbo_and_disentanglement_is_a_pareto_front(tmp_path) -> None:
    from tuner.api import run_study
    from tuner.search.records import SCORES_ATTR, curves

    config = _sprites_study(objective={"name": "elbo_and_disentanglement", "metric": "sap"}, budget={"n_trials": 1})
    study = run_study(config, storage_url=f"sqlite:///{tmp_path / 'db.sqlite'}", log=lambda _: None).study
    assert study.metric_names == ["val_elbo", "sap"] and len(study.directions) == 2
    (trial,) = study.best_trials
    assert trial.values[0] == pytest.approx(curves(trial)[-1]["val_elbo"])
    assert trial.values[1] == trial.user_attrs[SCORES_ATTR]["sap"]


def test_a_disentanglement_objective_needs_factors(tmp_path) -> None:
    import optuna

    from tests.helpers import tiny_study_dict
    from tuner.api import run_study
    from tuner.errors import ConfigError
    from tuner.search.study_file import validate_study

    config = validate_study(tiny_study_dict(objective="disentanglement"))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(ConfigError, match="objective: disentanglement needs the data's factors of variation"):
        run_study(config, storage_url=url, log=lambda _: None)
    assert optuna.get_all_study_names(url) == []  # nothing stored
    # `tuner launch` says so before it starts a worker or creates a database.
    from tests.helpers import write_study
    from tuner.api import launch_study

    path = write_study(tmp_path, "nofactors", objective="disentanglement")
    with pytest.raises(ConfigError, match="needs the data's factors of variation"):
        launch_study(path, workers=2, storage_url=f"sqlite:///{tmp_path / 'launch.db'}", log_dir=tmp_path / "logs")
    assert not (tmp_path / "launch.db").exists() and not (tmp_path / "logs").exists()


def test_the_objective_setting_is_checked() -> None:
    from tests.helpers import tiny_study_dict
    from tuner.errors import ConfigError
    from tuner.search.study_file import validate_study

    assert validate_study(tiny_study_dict(objective="disentanglement")).disentanglement_metric == "mig"
    with pytest.raises(ConfigError, match="objective"):
        validate_study(tiny_study_dict(objective={"name": "disentanglement", "metric": "beta_vae"}))
