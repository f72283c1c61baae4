"""The typer application, its options and checks, and the ``command`` decorator that turns a
:class:`~tuner.errors.TunerError` into one ``error:`` line and its exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tuner._compat import hide_flag_types_in_help
from tuner.errors import OptionError, TunerError
from tuner.ui.console import err

hide_flag_types_in_help()
app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Hyperparameter search for the KL weight (beta) of convolutional VAEs.",
)

StorageOpt = Annotated[
    Optional[str],
    typer.Option(
        "--storage",
        metavar="URL",
        help="SQLAlchemy URL or journal:///file; default $TUNER_STORAGE, else sqlite:///storage/tuner.db",
    ),
]
ArtifactsOpt = Annotated[
    Optional[str], typer.Option(metavar="DIR", help="artifact folder (default: artifacts/ beside the storage)")
]
TrialsOpt = Annotated[
    Optional[int],
    typer.Option(min=1, max=1_000_000, metavar="N", help="total finished trials wanted (counts earlier runs)"),
]
TimeoutOpt = Annotated[Optional[float], typer.Option(metavar="SECONDS", help="stop starting trials after this long")]
HeartbeatOpt = Annotated[
    int,
    typer.Option(
        "--heartbeat", min=1, max=3600, metavar="SECONDS", help="seconds between a running trial's heartbeats"
    ),
]
DbRetryOpt = Annotated[
    float, typer.Option(min=0, metavar="SECONDS", help="seconds to ride out a lost database connection")
]
GraceOpt = Annotated[
    int,
    typer.Option(
        "--grace", min=1, max=86_400, metavar="SECONDS", help="seconds without heartbeat before a trial is retried"
    ),
]


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a command whose user errors print as one line with a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TunerError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return app.command()(wrapper)


# Importance samples: 5,000 is the papers' protocol; a million per image is hours of a GPU and
# beyond it a typo.
MAX_K = 1_000_000


def _positive(option: str, value: float | None) -> None:
    if value is not None and not 0 < value < float("inf"):
        raise OptionError(f"{option}: must be a finite number > 0, got {value}")


def _writable(option: str, path: Path, kind: str = "file") -> None:
    """OptionError unless the command can write ``path`` (a file, or a folder with kind
    "folder"): checked before the work, not after minutes of it."""
    from tuner.storage import file_problem, folder_problem

    problem = folder_problem(path) if kind == "folder" else file_problem(path)
    if problem:
        raise OptionError(f"{option}: {problem}; give a {kind} path you can write")


def _bindable(host: str) -> None:
    """OptionError unless ``host`` is an address this machine could listen on (checked before
    any warning about it is printed)."""
    import socket

    if not host.strip():
        raise OptionError("--host: empty; give an address, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all)")
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        raise OptionError(f"--host: {host!r} is not an address of this machine; e.g. 127.0.0.1 or 0.0.0.0") from None
