"""Shared fixtures: tiny data and configs so that the suite stays fast on two CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"
if "TUNER_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["TUNER_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tiny_config_dict(**sections) -> dict:
    """A config that trains in about a second: 256 MNIST images, narrow convolutions."""
    config = {
        "data": {"dataset": "mnist", "n_train": 256, "n_val": 128},
        "model": {"latent_dim": 4, "filters": [8, 16]},
        "schedule": {"name": "constant", "max_beta": 1.0},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 3e-3, "seed": 0},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


@pytest.fixture
def tiny_config():
    from tuner.config import TrainConfig

    def make(**sections) -> TrainConfig:
        return TrainConfig.model_validate(tiny_config_dict(**sections))

    return make


@pytest.fixture(scope="session")
def tiny_splits():
    from tuner.config import DataConfig

    return DataConfig(n_train=256, n_val=128).load()


@pytest.fixture
def random_images():
    rng = np.random.default_rng(0)
    return rng.random((8, 28, 28, 1), dtype=np.float32)


def tiny_study_dict(name: str = "tiny", **extra) -> dict:
    """A study whose trials train for a second or two each."""
    study = {
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
