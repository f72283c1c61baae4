"""``tuner launch``: N local worker processes on one study, pinned to GPUs, one combined view."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuner._system import usable_cores
from tuner.errors import OptionError, TunerError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from rich.console import Console


def worker_env(index: int, gpus: list[str] | None, trials_per_gpu: int, base: dict[str, str]) -> dict[str, str]:
    """Environment of worker ``index``: its GPU, and memory limits so that ``trials_per_gpu``
    workers fit on one card (JAX: no preallocation and a fraction each; TensorFlow: memory
    growth instead of taking the whole card)."""
    env = dict(base)
    env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index // trials_per_gpu % len(gpus)]
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / trials_per_gpu:.3f}"
    return env


def max_workers() -> int:
    """Workers one machine can hold: each is a training process (a backend, its data, about
    0.2-1 GB), so four per core at most; more only thrash, and hundreds exhaust memory."""
    return 4 * usable_cores()


def check_layout(workers: int, gpus: list[str] | None, trials_per_gpu: int) -> None:
    # CUDA_VISIBLE_DEVICES takes indices or the UUIDs nvidia-smi -L prints (GPU-…, MIG-…).
    for gpu in gpus or []:
        if not (re.fullmatch(r"[0-9]{1,3}", gpu) or re.fullmatch(r"(GPU|MIG)-[0-9A-Za-z-]+", gpu)):
            raise OptionError(f"--gpus: {gpu!r} is not a GPU id; give indices or UUIDs from `nvidia-smi -L`, e.g. 0,1")
    if gpus is not None and len(set(gpus)) != len(gpus):
        raise OptionError(f"--gpus: {','.join(gpus)} names a GPU twice; use --trials-per-gpu to share one")
    if workers < 1:
        raise OptionError(f"--workers: must be >= 1, got {workers}")
    if workers > max_workers():
        raise OptionError(
            f"--workers: {workers} training processes on {max_workers() // 4} CPU core(s) would exhaust this "
            f"machine; use at most {max_workers()}, and `tuner worker` on more machines for more"
        )
    if trials_per_gpu < 1:
        raise OptionError(f"--trials-per-gpu: must be >= 1, got {trials_per_gpu}")
    if gpus and workers > len(gpus) * trials_per_gpu:
        raise OptionError(
            f"--workers: {workers} workers do not fit on {len(gpus)} GPU(s) x {trials_per_gpu} trials each; "
            "raise --trials-per-gpu or add GPUs"
        )


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    log_path: Path
    reported: bool = False


def _stop_with_parent() -> None:
    # In the worker, before it starts: SIGTERM when the launcher dies, even by SIGKILL (a
    # scheduler's hard timeout), which leaves it no chance to stop its workers itself. They
    # then fail their running trial and exit, instead of training on as orphans.
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_workers(
    command: list[str], workers: int, gpus: list[str] | None, trials_per_gpu: int, log_dir: Path
) -> list[Worker]:
    log_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for i in range(workers):
        log_path = log_dir / f"worker-{i}.log"
        with open(log_path, "w") as log:
            # Own process group: a terminal Ctrl-C reaches the launcher only, which then
            # stops each worker itself and waits for it to mark its trial.
            proc = subprocess.Popen(
                command,
                env=worker_env(i, gpus, trials_per_gpu, dict(os.environ)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
            )
        started.append(Worker(i, proc, log_path))
    return started


def stop_workers(workers: list[Worker], grace_s: float = 60.0) -> None:
    import signal

    for w in workers:
        if w.process.poll() is None:
            w.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for w in workers:
        try:
            w.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.process.kill()


def worker_command(study_file: Path, extra: list[str]) -> list[str]:
    # The storage URL travels through TUNER_STORAGE, never on a command line (ps shows those).
    return [sys.executable, "-m", "tuner", "worker", str(study_file), *extra]


def live_counts(storage: BaseStorage, study_name: str) -> tuple[Counter[str], str]:
    """The study's trials by state and its best value, or "starting" before it exists."""
    import optuna

    from tuner.ui.status import study_summary

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return Counter(), "starting"
    # Counted by the database: loading every trial each poll (2 s) took longer than the poll
    # once a study held thousands, and competed with the workers for the server.
    return study_summary(storage, study)


def supervise(
    workers: list[Worker], poll: Callable[[], None], on_death: Callable[[Worker, int], None], interval: float = 2.0
) -> int:
    """Wait for every worker; report each that dies with an error. Returns the number that failed."""
    failed = 0
    while True:
        poll()
        running = 0
        for w in workers:
            code = w.process.poll()
            if code is None:
                running += 1
            elif code != 0 and not w.reported:
                w.reported = True
                failed += 1
                on_death(w, code)
        if not running:
            poll()
            return failed
        time.sleep(interval)


def progress_line(db: BaseStorage, study_name: str, total: int | None, alive: int, workers: int) -> str:
    """The launcher's live line: finished trials of the budget, trials by state, the best value
    and the workers alive."""
    from tuner import storage as storage_lib
    from tuner.search.records import finished_count

    try:
        counts, best = live_counts(db, study_name)
    except Exception as exc:
        # The count reads the database directly: while it is unreachable the workers ride it
        # out (their retrying storage), and so does this line, instead of stopping the launcher.
        if not storage_lib.is_transient(exc):
            raise
        return f"database unreachable ({type(exc).__name__}); the workers retry | {alive}/{workers} workers alive"
    states = " ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{finished_count(counts)}/{total} finished | {states} | {best} | {alive}/{workers} workers alive"


def launch_study(
    study_file: Path,
    study_name: str,
    url: str,
    db: BaseStorage,
    *,
    workers: int,
    gpus: list[str] | None,
    trials_per_gpu: int,
    worker_args: list[str],
    log_dir: Path,
    total: int | None,
    console: Console,
) -> None:
    """Start the workers on the study in ``db`` (opened from ``url``, which they inherit),
    show one live line of combined progress until they all exit, stop them all on Ctrl-C.
    Raises TunerError if any worker failed (the others ran on)."""
    from rich.live import Live

    from tuner import storage as storage_lib

    os.environ[storage_lib.STORAGE_ENV] = url  # workers inherit it; it never appears in `ps`
    procs = start_workers(worker_command(study_file, worker_args), workers, gpus, trials_per_gpu, log_dir)
    console.print(
        f"{workers} workers on study {study_name!r} at {storage_lib.describe(url)}; logs in {Path(log_dir).absolute()}",
        markup=False,
    )
    with Live(console=console, refresh_per_second=2, transient=False) as live:

        def poll() -> None:
            alive = sum(w.process.poll() is None for w in procs)
            live.update(progress_line(db, study_name, total, alive, workers))

        def on_death(w: Worker, code: int) -> None:
            console.print(
                f"worker {w.index} exited with code {code}; see {w.log_path}. The others go on.", markup=False
            )

        try:
            failed = supervise(procs, poll, on_death)
        except KeyboardInterrupt:
            console.print("\nstopping workers (their running trials are marked failed)...", markup=False)
            stop_workers(procs)
            raise
    console.print("")
    if failed:
        raise TunerError(f"{failed} of {workers} workers failed; see their logs in {log_dir}")
