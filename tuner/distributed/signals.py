"""Stop signals from schedulers handled like Ctrl-C."""

from __future__ import annotations

import signal
from typing import Any


def stop_on_sigterm() -> None:
    """Treat SIGTERM (Slurm, Kubernetes, `tuner launch`) like Ctrl-C: the running trial is
    marked failed (never left RUNNING) and the process exits."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
