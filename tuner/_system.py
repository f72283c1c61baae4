"""Facts about the machine this process runs on, for every layer (it imports nothing of the
project, so the VAE layer may use it as well as the launcher)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may use (Slurm, taskset, a container's cpuset), not the
    machine's: a worker pinned to 4 of 64 cores must size its threads for 4."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
