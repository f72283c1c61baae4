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


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_stop_when_the_launcher_is_killed(tmp_path):
    """A launcher killed outright (SIGKILL: a scheduler's hard limit) cannot stop its workers;
    they must not train on as orphans (seen: 166 of them exhausting memory)."""
    import signal
    import time

    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from tuner.distributed.launch import start_workers\n"
            f"ws = start_workers([sys.executable, '-c', 'import time; time.sleep(120)'], 3, None, 1, Path({str(tmp_path)!r}))\n"
            "print(' '.join(str(w.process.pid) for w in ws), flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    pids = [int(p) for p in launcher.stdout.readline().split()]
    assert len(pids) == 3
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if _running(p)]
    assert not alive


def _running(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (dead, not yet reaped by init) is gone too
        return stat.read().split(") ")[-1][0] != "Z"


def test_the_live_line_rides_out_a_lost_database(tmp_path, monkeypatch):
    """The launcher's line counts trials with a query of its own: an unreachable database is
    said on the line (the workers retry), anything else still stops the launcher."""
    import sqlalchemy.exc

    from tuner import storage as storage_lib
    from tuner.distributed import launch
    from tuner.testing import synthetic_study

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    synthetic_study(url, name="live", n_trials=3)
    db = storage_lib.open_storage(url, read_only=True)
    line = launch.progress_line(db, "live", 5, 2, 3)
    assert line.startswith("3/5 finished | complete 3 | best val ELBO ") and line.endswith("| 2/3 workers alive")

    def lost(*_):
        raise sqlalchemy.exc.OperationalError("SELECT", {}, ConnectionRefusedError("server closed the connection"))

    monkeypatch.setattr(launch, "live_counts", lost)
    assert launch.progress_line(db, "live", 5, 2, 3).startswith("database unreachable (OperationalError)")

    def bug(*_):
        raise ValueError("a bug, not an outage")

    monkeypatch.setattr(launch, "live_counts", bug)
    with pytest.raises(ValueError):
        launch.progress_line(db, "live", 5, 2, 3)
