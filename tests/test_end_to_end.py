"""The slow end-to-end test: a real study through the CLI, interrupted with Ctrl-C, resumed."""

import os
import signal
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import tiny_study_dict

pytestmark = pytest.mark.slow


def test_interrupt_then_resume_completes_budget(tmp_path):
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study_dict("e2e", budget={"n_trials": 3}, training={"epochs": 3})))
    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    cmd = [sys.executable, "-m", "tuner", "run", str(study_file), "--storage", url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait until trial 0 is done and trial 1 is training
        lines.append(line)
        if line.startswith("trial   1 epoch 1/3"):
            break
    proc.send_signal(signal.SIGINT)  # trial 1 is between its first and second epoch
    output = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=60) == 130, output
    assert "interrupted" in output and "Traceback" not in output

    study = optuna.load_study(study_name="e2e", storage=url)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert interrupted and "interrupted" in interrupted[0].user_attrs["fail_reason"]

    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    study = optuna.load_study(study_name="e2e", storage=url)
    finished = study.get_trials(states=[TrialState.COMPLETE, TrialState.PRUNED])
    assert len(finished) == 3
    assert "3 finished trials" in rerun.stdout and "best val ELBO" in rerun.stdout
