"""Launcher logic without training: GPU pinning, memory limits, dead workers reported."""

import subprocess
import sys

import pytest

from tuner.distributed.launch import Worker, check_layout, supervise, worker_env
from tuner.errors import TunerError


def test_workers_are_pinned_and_share_memory():
    envs = [worker_env(i, ["0", "1"], 2, {"PATH": "/bin"}) for i in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "0", "1", "1"]
    assert all(e["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450" for e in envs)
    assert all(e["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" for e in envs)
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(0, None, 1, {})


def test_layout_checks():
    with pytest.raises(TunerError, match="--workers: 5 workers do not fit on 2 GPU"):
        check_layout(5, ["0", "1"], 2)
    check_layout(4, ["0", "1"], 2)


def test_dead_worker_is_reported_and_others_go_on(tmp_path):
    procs = [
        Worker(0, subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"]), tmp_path / "w0.log"),
        Worker(1, subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"]), tmp_path / "w1.log"),
    ]
    deaths, polls = [], []
    failed = supervise(procs, lambda: polls.append(1), lambda w, code: deaths.append((w.index, code)), interval=0.1)
    assert failed == 1 and deaths == [(0, 3)]
    assert procs[1].process.returncode == 0  # the healthy worker ran to the end
    assert len(polls) > 3
