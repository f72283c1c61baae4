"""Ctrl-C and scheduler stop signals, delivered where they cannot corrupt the database.

A worker treats SIGTERM (Slurm, Kubernetes, `tuner launch`) like Ctrl-C: the running trial is
marked failed, never left RUNNING, and the process exits 130.

Python raises ``KeyboardInterrupt`` at whatever bytecode is running, and a trial writes to its
database after every epoch. Raised between SQLite's ``BEGIN IMMEDIATE`` and ``COMMIT``, it
leaves the write lock with a connection that SQLAlchemy has discarded but not closed: every
later statement of the process then waits on that lock, including the one that marks the
trial failed (measured: the worker retried for 30 s and exited 1 instead of 130). So while a
storage call runs (:func:`deferred`), the signal is only noted, and raised when the call ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_depth = 0  # storage calls in progress on the main thread
_pending = False  # a stop signal arrived during one of them


def _handler(signum: int, frame: Any) -> None:
    global _pending
    if _depth:
        _pending = True
        return
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Install the handler for SIGINT and SIGTERM (main thread only, as Python requires)."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a stop signal that arrives meanwhile is raised when it ends.

    Only the main thread receives signals; other threads (heartbeats) pass straight through.
    Without :func:`stop_on_signals` (the Python API inside a user's program), Python's own
    handler stays and nothing is deferred.
    """
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending:
            _pending = False
            raise KeyboardInterrupt
