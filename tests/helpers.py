"""Tiny configs and study files shared by tests (imported by tests, unlike conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_config_dict(**sections: dict[str, Any]) -> dict[str, Any]:
    """A config that trains in about a second: 256 MNIST images, narrow convolutions."""
    config: dict[str, Any] = {
        "data": {"dataset": "mnist", "n_train": 256, "n_val": 128},
        "model": {"latent_dim": 4, "filters": [8, 16]},
        "schedule": {"name": "constant", "max_beta": 1.0},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 3e-3, "seed": 0},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def tiny_study_dict(name: str = "tiny", **extra: Any) -> dict[str, Any]:
    """A study whose trials train for a second or two each."""
    study: dict[str, Any] = {
        "name": name,
        "data": {"dataset": "mnist", "n_train": 256, "n_val": 128},
        "model": {"filters": [8, 16]},
        "training": {"epochs": 2, "batch_size": 64, "seed": 0},
        "search": {"latent_dim": {"low": 2, "high": 8}, "max_beta": {"low": 0.5, "high": 2.0}},
        "sampler": {"name": "random", "seed": 0},
        "budget": {"n_trials": 2},
    }
    for key, value in extra.items():
        study[key] = {**study[key], **value} if isinstance(value, dict) and key in study else value
    return study


# Trials long enough (4 epochs of 1,024 images, a few seconds) for a test to act while one runs,
# and never pruned: the default pruner may stop a trial at epoch 1, right after the epoch that
# a test waits for, and the test then finds no running trial to act on (seen in CI).
SLOW_TRIALS: dict[str, Any] = {
    "data": {"n_train": 1024, "n_val": 256},
    "training": {"epochs": 4},
    "pruner": {"name": "none"},
}


def write_study(folder: Path, name: str, **extra: Any) -> Path:
    """A tiny study file ``folder/name.yaml`` (see :func:`tiny_study_dict`)."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_study_dict(name, **extra)))
    return path


def start_worker(folder: Path, study_file: Path, url: str, *args: str) -> subprocess.Popen[str]:
    """A `tuner worker` process on ``url`` (passed as TUNER_STORAGE, as `tuner launch` does)."""
    env = {**os.environ, "TUNER_STORAGE": url, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tuner", "worker", str(study_file), "--artifacts", str(folder / "artifacts"), *args]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_running_trial(name: str, url: str, min_number: int = 0, deadline_s: float = 180) -> Any:
    """The first RUNNING trial (numbered ``min_number`` or later) that has finished an epoch.

    One storage for the whole wait: a new one per poll (``optuna.load_study(storage=url)``)
    leaves a connection pool behind every time, and a slow machine then exhausts the
    PostgreSQL server's 100 connections (seen under pytest-xdist)."""
    import time

    import optuna
    from optuna.trial import TrialState

    from tuner.search.records import curves

    storage = optuna.storages.RDBStorage(url)
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                continue
            running = study.get_trials(deepcopy=False, states=[TrialState.RUNNING])
            started = [t for t in running if curves(t) and t.number >= min_number]
            if started:
                return started[0]
        raise AssertionError("no trial reached the middle of its training")
    finally:
        storage.engine.dispose()


def refused(dataset: Any) -> str:
    """The one-line message with which loading ``dataset`` (a tuner.vae.data.Dataset) is refused."""
    import pytest

    from tuner.errors import DataError
    from tuner.vae.data import prepare

    with pytest.raises(DataError) as info:
        prepare(dataset)
    message = str(info.value)
    assert "\n" not in message, message
    return message
