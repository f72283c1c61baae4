"""Scale past one database's connections: workers through `tuner storage-proxy` (gRPC) keep
heartbeats and the exact budget; on journal storage, `tuner fail-stale` frees a dead
worker's trial by hand."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import free_port, tiny_study_dict
from tuner import storage as storage_lib
from tuner.cli import main
from tuner.storage import serve_proxy


def wait_for_port(port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def proxy(tmp_path):
    """An in-process gRPC proxy in front of a SQLite file; yields its grpc:// URL."""
    port = free_port()
    backend = storage_lib.open_storage(f"sqlite:///{tmp_path / 'behind-proxy.db'}")
    threading.Thread(target=serve_proxy, args=(backend, "127.0.0.1", port), daemon=True).start()
    wait_for_port(port)
    return f"grpc://127.0.0.1:{port}"


def test_heartbeats_through_the_proxy_fail_and_requeue_a_dead_trial(proxy):
    storage = storage_lib.open_storage(proxy, heartbeat=storage_lib.Heartbeat(interval=1, grace=2, max_retry=3))
    study = optuna.create_study(study_name="hb", storage=storage)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    assert storage._get_stale_trial_ids(study._study_id) == []  # type: ignore[attr-defined]
    time.sleep(3)  # the worker died: no heartbeat for longer than the grace period
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trial.number] == TrialState.FAIL
    retries = study.get_trials(states=[TrialState.WAITING])
    assert len(retries) == 1 and retries[0].params == study.trials[trial.number].params


def test_workers_through_the_proxy_meet_the_exact_budget(tmp_path):
    port = free_port()
    db = f"sqlite:///{tmp_path / 'tuner.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tuner", "storage-proxy", "--storage", db, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port)
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(tiny_study_dict("proxied", budget={"n_trials": 3})))
        env = {**os.environ, "TUNER_STORAGE": f"grpc://127.0.0.1:{port}", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "tuner", "worker", str(path), "--artifacts", str(tmp_path / "artifacts")]
        workers = [
            subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=300)[0] for w in workers]
        assert all(w.returncode == 0 for w in workers), outputs
    finally:
        server.terminate()
        server.wait(timeout=30)
    study = optuna.load_study(study_name="proxied", storage=db)
    assert len(study.get_trials(states=[TrialState.COMPLETE, TrialState.PRUNED])) == 3
    assert TrialState.RUNNING not in [t.state for t in study.trials]
    # Heartbeats went through the proxy too.
    assert any("tuner:heartbeat" in t.system_attrs for t in study.trials)


def test_fail_stale_frees_a_dead_workers_trial_on_journal_storage(tmp_path, capsys):
    url = f"journal://{tmp_path / 'journal.log'}"
    study = optuna.create_study(study_name="journal", storage=storage_lib.open_storage(url))
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # its worker was killed
    alive = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    with pytest.raises(SystemExit) as exited:
        main(["fail-stale", "--study", "journal", "--trial", str(dead.number), "--storage", url])
    assert exited.value.code == 0, capsys.readouterr()
    study = optuna.load_study(study_name="journal", storage=storage_lib.open_storage(url))
    states = {t.number: t.state for t in study.trials}
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    waiting = study.get_trials(states=[TrialState.WAITING])
    assert len(waiting) == 1 and waiting[0].params == study.trials[dead.number].params
    with pytest.raises(SystemExit) as exited:  # a trial that is not running: one line, exit 2
        main(["fail-stale", "--study", "journal", "--trial", str(dead.number), "--storage", url])
    assert exited.value.code == 2
    assert "not running" in capsys.readouterr().err
