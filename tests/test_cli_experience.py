"""The first hour: commands that do not train load no backend, output starts with the
product's own words, progress is counted from what is already there, and the last epoch of a
trial is never pruned."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import optuna
import pytest
import yaml
from rich.console import Console

from tests.helpers import tiny_study_dict
from tuner.api import run_study
from tuner.search.study_file import validate_study
from tuner.testing import synthetic_study
from tuner.ui.progress import StudyProgress

PROBE = """
import json, sys
from tuner.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("MODULES " + json.dumps({"code": code, "heavy": sorted(m for m in ("tensorflow", "jax", "keras") if m in sys.modules)}))
"""


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("light")
    url = f"sqlite:///{folder / 'tuner.db'}"
    synthetic_study(url, name="light", n_trials=4)
    study_file = folder / "study.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study_dict("light")))
    return folder, url, study_file


def run_probe(folder, *args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)], cwd=folder, capture_output=True, text=True, timeout=120
    )
    line = [row for row in proc.stdout.splitlines() if row.startswith("MODULES ")]
    assert line, proc.stdout + proc.stderr
    return json.loads(line[-1][len("MODULES ") :]), proc


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["export", "--study", "light", "-o", "best.yaml"],
        ["report", "--study", "light", "-o", "report.html", "--no-best-views"],
        ["run", "{bad}"],  # an invalid study file is refused before any backend loads
        ["--version"],
    ],
    ids=["status", "export", "report", "invalid-study-file", "version"],
)
def test_commands_that_do_not_train_load_no_backend(study_db, args):
    folder, url, _ = study_db
    bad = folder / "bad.yaml"
    bad.write_text("name: bad\ntraining: {epochs: 0}\n")
    argv = [a.replace("{bad}", str(bad)) for a in args]
    if argv[0] != "--version":
        argv += ["--storage", url]
    result, proc = run_probe(folder, *argv)
    assert result["heavy"] == [], result
    assert result["code"] == (2 if "bad" in str(argv) else 0), proc.stderr


def test_run_output_is_quiet_and_shows_each_epoch(tmp_path):
    """Not a terminal (a pipe, a Slurm log): plain lines, one per epoch, no backend log lines."""
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study_dict("quiet", budget={"n_trials": 1})))
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", "run", str(study_file), "--storage", f"sqlite:///{tmp_path / 'db.sqlite'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    assert text.startswith("study 'quiet' on"), text[:500]
    for noise in ("absl", "oneDNN", "cudart", "I0000", "WARNING: All log messages"):
        assert noise not in text, text
    epochs = [line for line in proc.stdout.splitlines() if " epoch " in line and "val ELBO" in line]
    assert [line.split(" epoch ")[1].split()[0] for line in epochs] == ["1/2", "2/2"], proc.stdout
    assert "trial eta" in epochs[0]


def test_progress_counts_trials_already_finished():
    study = synthetic_study(optuna.storages.InMemoryStorage(), n_trials=6, fail_every=0)
    finished = len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]))
    assert finished == 6
    log = io.StringIO()
    progress = StudyProgress(8, console=Console(file=log, force_terminal=False), live=False)
    progress.open(study)
    assert progress.finished == 6
    trial = study.ask()
    study.tell(trial, -100.0)
    progress(study, study.trials[-1])
    assert progress.finished == 7
    assert "trial   6 complete" in log.getvalue()


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_the_last_epoch_is_never_pruned(tmp_path, monkeypatch):
    import tuner.search.study as study_module

    monkeypatch.setattr(study_module, "build_pruner", lambda config: AlwaysPrune())
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config = tiny_study_dict("prune", training={"epochs": 2}, budget={"n_trials": 2})
    summary = run_study(validate_study(config), storage_url=url)
    states = [(t.state, t.user_attrs.get("pruned_at_epoch")) for t in summary.study.trials]
    # Pruned after epoch 1 whenever the pruner says so, never after the last epoch (2).
    assert states == [(optuna.trial.TrialState.PRUNED, 1)] * 2
    one_epoch = tiny_study_dict("last", training={"epochs": 1}, budget={"n_trials": 1})
    summary = run_study(validate_study(one_epoch), storage_url=url)
    assert [t.state for t in summary.study.trials] == [optuna.trial.TrialState.COMPLETE]


def test_python_api_is_what_the_cli_uses(tmp_path, monkeypatch):
    import tuner

    monkeypatch.chdir(tmp_path)
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study_dict("api", budget={"n_trials": 1})))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = tuner.run_study(study_file, storage_url=url)
    assert summary.finished_after == 1
    best = tuner.load_best("api", storage_url=url)
    assert best.provenance and best.provenance["trial"] == 0
    result = tuner.train(best, epochs=1, out=tmp_path / "run")
    assert (tmp_path / "run" / "model.weights.h5").is_file() and len(result.history) == 1


def test_worker_joins_a_study_by_name_from_its_stored_config(tmp_path):
    """`tuner worker --study NAME` (no study file) rebuilds the study file from the copy stored
    in the study; that copy holds every pruner option at its default, which must not be refused
    as "an option of another pruner" (it was, in an earlier version)."""
    from typer.testing import CliRunner

    from tuner import storage as storage_lib
    from tuner.cli import app
    from tuner.search.study import open_study

    url = f"sqlite:///{tmp_path / 'w.db'}"
    for pruner in ("successive_halving", "median"):
        content = {**tiny_study_dict(), "name": f"by-name-{pruner}", "budget": {"n_trials": 1}}
        study = open_study(validate_study({**content, "pruner": {"name": pruner}}), storage_lib.open_storage(url))
        study.add_trial(optuna.trial.create_trial(value=-100.0, params={}, distributions={}))  # budget full
        # In this process (Keras is loaded already): the command, not its start-up, is tested.
        done = CliRunner().invoke(app, ["worker", "--study", study.study_name, "--storage", url])
        assert done.exit_code == 0, done.output
        assert "worker done: study has 1 finished trials" in done.output


def test_help_reads_cleanly():
    """Every command's description is one line in `tuner --help` (Typer keeps a docstring's line
    breaks), and flags show no "<bool>" type: they take no value."""
    import inspect

    from typer.testing import CliRunner

    from tuner.cli import app

    for command in app.registered_commands:
        assert command.callback is not None
        first = inspect.cleandoc(command.callback.__doc__ or "").split("\n\n")[0]
        assert "\n" not in first, f"{command.callback.__name__}: {first!r}"
    for args in ([], ["export"], ["report"], ["delete"], ["dashboard"]):
        shown = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "160"})
        assert shown.exit_code == 0 and "--help" in shown.output and "<bool>" not in shown.output, shown.output


def test_not_found_names_the_storage_and_where_relative_paths_are_read(study_db, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tuner.cli import app

    _, url, _ = study_db
    for args in (["export", "-o", str(tmp_path / "b.yaml")], ["status"]):
        missing = CliRunner().invoke(app, [*args, "--study", "nope", "--storage", url])
        assert missing.exit_code == 1
        assert f"no study named 'nope' in {url}" in missing.output and "(studies there: " in missing.output
        assert "light" in missing.output
    monkeypatch.chdir(tmp_path)  # the default database is relative: said, and nothing created here
    monkeypatch.delenv("TUNER_STORAGE", raising=False)
    elsewhere = CliRunner().invoke(app, ["status"])
    assert elsewhere.exit_code == 1
    assert f"no database at {tmp_path}/storage/tuner.db (a relative path is read from the current folder)" in (
        elsewhere.output
    )
    no_file = CliRunner().invoke(app, ["run", "studies/quickstart.yaml"])
    assert f"file not found in {tmp_path}" in no_file.output
    assert list(tmp_path.iterdir()) == []
