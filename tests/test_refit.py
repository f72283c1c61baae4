"""`tuner refit`: the best trial of a tiny study retrained to convergence and scored on test."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers import tiny_config_dict, tiny_study_dict
from tuner.cli import app
from tuner.config import TrainConfig, load_train_config
from tuner.errors import ConfigError
from tuner.search.study import run_study
from tuner.search.study_file import validate_study
from tuner.vae.data import load_splits
from tuner.vae.training import REFIT_EPOCHS, REFIT_PATIENCE, plan_epochs, refit_config

runner = CliRunner()


def test_refit_config_trains_to_convergence():
    config = TrainConfig.model_validate({"training": {"epochs": 8, "learning_rate": 2e-3}})
    refit = refit_config(config)
    assert refit.training.epochs == REFIT_EPOCHS and refit.training.patience == REFIT_PATIENCE
    assert refit.training.lr_schedule == "step_decay" and refit.training.learning_rate == 2e-3
    cosine = config.model_copy(update={"training": config.training.model_copy(update={"lr_schedule": "cosine"})})
    kept = refit_config(cosine, epochs=30, patience=4)
    assert (kept.training.lr_schedule, kept.training.epochs, kept.training.patience) == ("cosine", 30, 4)
    warm = TrainConfig.model_validate({"schedule": {"name": "linear", "anneal_epochs": 8}, "training": {"epochs": 8}})
    with pytest.raises(ConfigError, match="refit: .*anneal_epochs"):
        refit_config(warm, epochs=3)


def test_refit_a_tiny_study(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'tuner.db'}"
    run_study(validate_study(tiny_study_dict(budget={"n_trials": 1})), db_url)
    out = tmp_path / "refit"
    args = ["refit", "--study", "tiny", "--storage", db_url, "--epochs", "3", "--patience", "1", "--k", "3"]
    # A generous time budget: the probe plans more epochs than --epochs, which caps them.
    result = runner.invoke(app, [*args, "--out", str(out), "--time-budget", "600"])
    assert result.exit_code == 0, result.output
    assert "planned 3 epochs in 600 s" in result.output and "epoch 3/3" in result.output
    assert "test NLL (IWAE k=3)" in result.output and "under discretized_logistic" in result.output
    saved = load_train_config(out / "config.yaml")
    assert saved.training.patience == 1 and saved.training.lr_schedule == "step_decay"
    assert saved.model.likelihood == "discretized_logistic" and saved.provenance["study"] == "tiny"
    test = json.loads((out / "evaluation.json").read_text())
    assert test["split"] == "test" and test["k"] == 3 and test["nll_iwae"] > 0
    # Saved like `tuner train`: `tuner evaluate` reads it.
    again = runner.invoke(app, ["evaluate", str(out), "--k", "2", "--n", "8", "--max-memory", "0.01"])
    assert again.exit_code == 0, again.output
    assert "likelihood discretized_logistic" in again.output and "bits per dim" in again.output
    missing = runner.invoke(app, ["refit", "--study", "nope", "--storage", db_url])
    assert missing.exit_code != 0 and "nope" in missing.output


def test_plan_epochs_fits_the_budget():
    config = TrainConfig.model_validate(tiny_config_dict())
    splits = load_splits(config.data)
    many, seconds = plan_epochs(config, splits, 600.0)
    assert 0 < seconds < 60 and 600 / seconds * 0.5 < many < 600 / seconds  # the probe and compilation count
    few, _ = plan_epochs(config, splits, 0.001)  # less than the probe itself took
    assert few == 1


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", ["evaluate", "refit"])
def test_evaluate_and_refit_refuse_a_bad_memory_bound(tmp_path, value, command):
    target = [str(tmp_path)] if command == "evaluate" else ["--study", "s", "--storage", f"sqlite:///{tmp_path}/t.db"]
    result = runner.invoke(app, [command, *target, "--max-memory", value])
    assert result.exit_code == 2 and "--max-memory" in result.output
    assert not (tmp_path / "t.db").exists()  # refused before the storage is opened


def test_refit_refuses_a_bad_time_budget(tmp_path):
    result = runner.invoke(app, ["refit", "--study", "s", "--time-budget", "0"])
    assert result.exit_code == 2 and "--time-budget" in result.output
