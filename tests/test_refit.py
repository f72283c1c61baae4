"""`tuner refit`: the best trial of a tiny study retrained to convergence and scored on test."""

from __future__ import annotations

import json

import optuna
import pytest
from typer.testing import CliRunner

from tests.helpers import tiny_study_dict
from tuner.api import run_study
from tuner.cli import app
from tuner.config import TrainConfig, load_train_config
from tuner.errors import ConfigError
from tuner.search.study_file import validate_study
from tuner.vae.training import REFIT_EPOCHS, REFIT_PATIENCE, refit_config

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
    run_study(validate_study(tiny_study_dict(budget={"n_trials": 1})), storage_url=db_url)
    out = tmp_path / "refit"
    args = [
        "refit",
        "--study",
        "tiny",
        "--storage",
        db_url,
        "--epochs",
        "3",
        "--patience",
        "1",
        "--k",
        "3",
        "--n",
        "20",
    ]
    # A generous time budget: the probe plans more epochs than --epochs, which caps them.
    result = runner.invoke(app, [*args, "--out", str(out), "--time-budget", "600"])
    assert result.exit_code == 0, result.output
    assert "planned 3 epochs in 600 s" in result.output and "epoch 3/3" in result.output
    assert "test NLL (IWAE k=3, 20 images)" in result.output and "under discretized_logistic" in result.output
    saved = load_train_config(out / "config.yaml")
    assert saved.training.patience == 1 and saved.training.lr_schedule == "step_decay"
    assert saved.provenance is not None
    assert saved.model.likelihood == "discretized_logistic" and saved.provenance["study"] == "tiny"
    test = json.loads((out / "evaluation.json").read_text())
    assert test["split"] == "test" and test["k"] == 3 and test["n_images"] == 20 and test["nll_iwae"] > 0
    # Saved like `tuner train`: `tuner evaluate` reads it. Without --k, a CPU scores with 500 samples.
    again = runner.invoke(app, ["evaluate", str(out), "--n", "8", "--max-memory", "0.01"])
    assert again.exit_code == 0, again.output
    assert "k = 500 importance samples (the CPU default); --k 5000" in again.output
    assert "NLL (IWAE k=500)" in again.output
    assert "likelihood discretized_logistic" in again.output and "bits per dim" in again.output
    missing = runner.invoke(app, ["refit", "--study", "nope", "--storage", db_url])
    assert missing.exit_code != 0 and "nope" in missing.output
    # The refit's result is kept with the study: status and the report show it.
    status = runner.invoke(app, ["status", "--storage", db_url])
    assert f"refit of trial 0: test NLL {test['nll_iwae']:.2f} nats (IWAE k=3 on 20 images, 3 epochs" in status.output
    from tuner.report.data import summary

    stored = optuna.load_study(study_name="tiny", storage=db_url)
    found = summary(stored)
    assert found is not None and found.test_nll == pytest.approx(test["nll_iwae"])
    # ... and the dashboard: a table of refits, published into the study by the refit itself.
    from tuner.report.dashboard import vae_views

    table = vae_views(stored, None)["vae-refits"].data[0]
    assert list(table.cells.values[2]) == [f"{test['nll_iwae']:.2f}"] and list(table.cells.values[4]) == ["20"]
    rdb = optuna.storages.RDBStorage(db_url)
    system = rdb.get_study_system_attrs(rdb.get_study_id_from_name("tiny"))
    assert any("vae-refits" in key for key in system), sorted(system)


def test_plan_epochs_charges_the_probe_and_the_set_up(monkeypatch):
    """A probe whose first epoch took 5 s (compilation) and second 1 s, 7 s in all: of 100 s,
    the probe's 7 s and the real run's set-up (7 - 2 steady epochs) are spent, 88 epochs fit."""
    from tuner.vae import training

    clock = iter([1000.0, 1007.0])
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    fake = training.TrainResult(TrainConfig(), None, None, [{"epoch_time": 5.0}, {"epoch_time": 1.0}])  # type: ignore[arg-type, typeddict-item]
    monkeypatch.setattr(training, "train", lambda config, splits, epochs: fake)
    assert training.plan_epochs(TrainConfig(), None, 100.0) == (88, 1.0)  # type: ignore[arg-type]
    clock = iter([0.0, 7.0])
    assert training.plan_epochs(TrainConfig(), None, 3.0) == (1, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("planned", [2, 1])
def test_refit_trains_the_planned_epochs_or_refuses_a_budget_shorter_than_the_warm_up(tmp_path, monkeypatch, planned):
    from tuner.vae import training

    db_url = f"sqlite:///{tmp_path / 'tuner.db'}"
    # β warms up over 2 epochs: 2 planned epochs are enough, 1 is not.
    run_study(validate_study(tiny_study_dict(budget={"n_trials": 1}, search={"anneal_epochs": 2})), storage_url=db_url)
    monkeypatch.setattr(training, "plan_epochs", lambda config, splits, seconds: (planned, 0.1))
    out = tmp_path / "refit"
    target = ["refit", "--study", "tiny", "--storage", db_url]
    args = [*target, "--epochs", "3", "--k", "2", "--n", "50", "--time-budget", "9"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    if planned == 2:
        assert result.exit_code == 0, result.output
        assert "planned 2 epochs in 9 s" in result.output and "epoch 2/2" in result.output
        assert load_train_config(out / "config.yaml").training.epochs == 2
    else:
        assert result.exit_code == 2 and "--time-budget 9: 1 epoch(s) of 0.10 s fit" in result.output
        assert "Traceback" not in result.output and not out.exists()


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
