"""Shared fixtures: tiny data and configs so that the suite stays fast on two CPU cores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import tiny_config_dict

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "datasets"
if "TUNER_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["TUNER_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Decoded image folders are cached per machine; the tests keep theirs apart from a user's.
os.environ.setdefault("TUNER_CACHE_DIR", tempfile.mkdtemp(prefix="tuner-test-cache-"))
# Two test workers (pytest-xdist) share two cores, and many tests start worker processes of
# their own: one thread per process's ops avoids oversubscribing the cores (inherited by the
# subprocesses; read by TensorFlow, oneDNN/OpenMP and XLA:CPU when they load).
for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


@pytest.fixture
def tiny_config():
    from tuner.config import TrainConfig

    def make(**sections) -> TrainConfig:
        return TrainConfig.model_validate(tiny_config_dict(**sections))

    return make


@pytest.fixture(scope="session")
def tiny_splits():
    from tuner.config import DataConfig
    from tuner.vae.data import load_splits

    return load_splits(DataConfig(n_train=256, n_val=128))


@pytest.fixture
def random_images():
    rng = np.random.default_rng(0)
    return rng.random((8, 28, 28, 1), dtype=np.float32)
