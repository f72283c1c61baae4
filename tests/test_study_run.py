"""Real tiny studies on SQLite: curves, artifacts, export → retrain, failures."""

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from tests.helpers import tiny_study_dict
from tuner import storage as storage_lib
from tuner.api import run_study
from tuner.cli import app
from tuner.config import load_train_config
from tuner.errors import FatalError
from tuner.search.records import curves
from tuner.search.study import open_study
from tuner.search.study_file import validate_study
from tuner.vae.training import train

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'storage' / 'tuner.db'}"


def test_tiny_study_stores_curves_and_artifacts_and_exports(tmp_path, db_url):
    study_cfg = validate_study(tiny_study_dict())
    summary = run_study(study_cfg, storage_url=db_url)
    study = summary.study
    assert summary.finished_after == 2
    trials = study.get_trials(states=[TrialState.COMPLETE])
    assert trials[0].user_attrs.get("baseline") is True
    assert trials[0].params["max_beta"] == 1.0  # the enqueued default config ran first
    for trial in trials:
        rows = curves(trial)
        assert [r["epoch"] for r in rows] == [1, 2]
        assert {"recon", "kl", "elbo", "beta", "val_recon", "val_kl", "val_elbo", "epoch_time"} <= set(rows[0])
        assert rows[-1]["val_elbo"] == pytest.approx(trial.value)
    artifacts = list((tmp_path / "storage" / "artifacts").rglob("*"))
    assert len([a for a in artifacts if a.is_file()]) == 6  # weights, picture and report views per trial

    out = tmp_path / "best.yaml"
    result = runner.invoke(app, ["export", "--study", "tiny", "--storage", db_url, "-o", str(out), "--weights"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "best.weights.h5").stat().st_size > 0
    config = load_train_config(out)
    assert config.provenance is not None
    assert config.provenance["trial"] == study.best_trial.number
    retrained = train(config)
    assert abs(retrained.val_elbo - study.best_value) < 1.0

    as_json = tmp_path / "best.json"  # the storage's only study: --study may be left out
    assert runner.invoke(app, ["export", "--storage", db_url, "-o", str(as_json)]).exit_code == 0
    from_json = load_train_config(as_json)
    assert from_json.provenance is not None
    assert from_json.provenance["trial"] == config.provenance["trial"]
    assert from_json.model_copy(update={"provenance": None}) == config.model_copy(update={"provenance": None})

    status = runner.invoke(app, ["status", "--storage", db_url])
    assert "tiny: 2 complete" in status.output and "best val ELBO" in status.output
    assert status.output.startswith(f"studies in {db_url}")  # which database it read

    twice = runner.invoke(app, ["report", "--study", "tiny", "--study", "tiny", "--storage", db_url])
    assert twice.exit_code == 2 and "'tiny' given twice" in twice.output

    # The report draws the best trial and the top trials across β from the views they stored:
    # no backend loads, and the summary and the best-trial section give one diagnosis.
    from tests.test_cli_experience import run_probe

    html_out = tmp_path / "report.html"
    loaded, proc = run_probe(tmp_path, "report", "--study", "tiny", "--storage", db_url, "-o", html_out)
    assert loaded == {"code": 0, "heavy": []}, proc.stdout + proc.stderr
    page = html_out.read_text()
    assert f"Best trial {study.best_trial.number}: reconstructions and samples" in page
    assert "Reconstructions across β (top trials)" in page and "Reconstruction quality of the top trials" in page
    from tuner.report.best_trial import best_trial_views

    best = best_trial_views(study, storage_lib.artifact_store(db_url, None))
    assert best is not None and best.number == study.best_trial.number
    assert page.count(best.diagnosis[0].split(":")[0] + ":") >= 2  # the summary's and the section's, the same
    assert best.originals.shape == best.reconstructions.shape == (8, 28, 28, 1)
    assert best.psnr_db is not None and best.sharpness is not None
    # 8-bit grey MNIST under the discretized logistic: bits per dimension beside PNG's, in the table too.
    assert best.bits_per_dim is not None and best.png_bits_per_dim is not None and 1 < best.png_bits_per_dim < 8
    assert f"PNG {best.png_bits_per_dim:.3f}" in page

    # delete: refused without a terminal to confirm on, then with --yes the study and its
    # artifacts go; an unknown study is one line, and nothing is created.
    asked = runner.invoke(app, ["delete", "--study", "tiny", "--storage", db_url])
    assert asked.exit_code == 2 and "give --yes" in asked.output
    gone = runner.invoke(app, ["delete", "--study", "tiny", "--storage", db_url, "--yes"])
    assert gone.exit_code == 0 and "deleted study 'tiny': 2 trials, 6 artifacts" in gone.output, gone.output
    assert optuna.get_all_study_names(db_url) == []
    assert [a for a in (tmp_path / "storage" / "artifacts").rglob("*") if a.is_file()] == []
    missing = runner.invoke(app, ["delete", "--study", "tiny", "--storage", db_url, "--yes"])
    assert missing.exit_code != 0 and "tiny" in missing.output
    elsewhere = tmp_path / "nowhere.db"
    none = runner.invoke(app, ["delete", "--study", "tiny", "--storage", f"sqlite:///{elsewhere}", "--yes"])
    assert none.exit_code != 0 and not elsewhere.exists()


def test_resume_counts_finished_trials(db_url):
    study_cfg = validate_study(tiny_study_dict(budget={"n_trials": 1}))
    run_study(study_cfg, storage_url=db_url)
    summary = run_study(study_cfg, storage_url=db_url, n_trials=2)
    assert (summary.finished_before, summary.finished_after) == (1, 2)
    again = run_study(study_cfg, storage_url=db_url, n_trials=2)  # budget already met: nothing runs
    assert again.finished_after == 2 and len(again.study.trials) == 2
    from tuner.report.data import metadata

    # The report shows the budget in force (2, given to run_study), not the file's 1.
    assert metadata(again.study, db_url)["budget used"] == "2 / 2"


def test_diverging_trial_fails_with_reason_and_study_goes_on(db_url):
    study_cfg = validate_study(
        tiny_study_dict(enqueue_baseline=False, search={"learning_rate": {"choices": [100.0, 2e-3]}})
    )
    study = open_study(study_cfg, storage_lib.open_storage(db_url))
    study.enqueue_trial({"learning_rate": 100.0})  # the largest a file allows: diverges at once
    study.enqueue_trial({"learning_rate": 2e-3})
    summary = run_study(study_cfg, storage_url=db_url)
    failed = summary.study.get_trials(states=[TrialState.FAIL])
    assert len(failed) == 1 and "diverged" in failed[0].user_attrs["fail_reason"]
    assert "with learning rate 100;" in failed[0].user_attrs["fail_reason"]
    assert summary.finished_after == 2


def test_consecutive_failures_stop_the_study(tmp_path, db_url):
    study = tiny_study_dict(
        enqueue_baseline=False, search={"learning_rate": 100.0}, budget={"n_trials": 5, "max_consecutive_failures": 2}
    )
    with pytest.raises(FatalError, match="2 failed trials in a row; last reason: loss diverged"):
        run_study(validate_study(study), storage_url=db_url)
    trials = optuna.load_study(study_name="tiny", storage=db_url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]


def test_multi_objective_rate_distortion(db_url):
    study_cfg = validate_study(tiny_study_dict(objective="rate_distortion"))
    summary = run_study(study_cfg, storage_url=db_url)
    study = summary.study
    assert len(study.directions) == 2 and summary.finished_after == 2
    for trial in study.best_trials:
        assert trial.values[0] == pytest.approx(curves(trial)[-1]["val_recon"])
        assert trial.values[1] == pytest.approx(curves(trial)[-1]["val_kl"])
    result = runner.invoke(app, ["export", "--study", "tiny", "--storage", db_url, "-o", "x.yaml"])
    assert result.exit_code == 1 and "Pareto front" in result.output


def test_keep_weights_of_best_only(tmp_path, db_url):
    study_cfg = validate_study(tiny_study_dict(budget={"n_trials": 3}, artifacts={"keep_weights": 1}))
    study = run_study(study_cfg, storage_url=db_url).study
    removed = study.user_attrs["weights_removed"]
    assert len(removed) == 2 and study.best_trial.number not in removed
    weights = [p for p in (tmp_path / "storage" / "artifacts").rglob("*") if p.is_file() and p.stat().st_size > 20_000]
    assert len(weights) == 1
    result = runner.invoke(
        app,
        [
            "export",
            "--study",
            "tiny",
            "--storage",
            db_url,
            "--trial",
            str(removed[0]),
            "-o",
            str(tmp_path / "x.yaml"),
            "--weights",
        ],
    )
    assert result.exit_code == 1 and "kept no weights" in result.output
