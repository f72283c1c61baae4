"""The ``tuner`` command. Thin: each command checks its options, then calls one function of
the library (:mod:`tuner.api` for most). Commands live in ``_training`` (train, evaluate,
refit), ``_studies`` (run, worker, launch, status, export, report) and ``_servers``
(dashboard, storage-proxy, fail-stale); ``_app`` holds the app, shared options and checks.

Keras (and TensorFlow or JAX) is imported only by the commands that train or evaluate, after
``--backend`` has set ``KERAS_BACKEND``; status, export, report, dashboard and the validation
of files never load it. Every user error, a bad option included, prints one ``error:`` line
and exits non-zero (2 for invalid files and options) before anything is created.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException

from tuner import __version__
from tuner.cli._app import app
from tuner.ui.console import err, out
from tuner.vae import jax_cache

# Each module registers its commands on import, in the order `tuner --help` lists them.
# isort: off
from tuner.cli import _training, _studies, _servers  # noqa: E402, F401
# isort: on

__all__ = ["app", "main"]


def _version(value: bool) -> None:
    if value:
        out.print(f"tuner {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _global(
    backend: Annotated[
        Optional[str],
        typer.Option(metavar="tensorflow|jax", help="Keras backend (default tensorflow); or set KERAS_BACKEND"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    if backend:
        if backend not in ("tensorflow", "jax"):
            err.print(f"error: --backend: must be tensorflow or jax, got {backend!r}", markup=False)
            raise typer.Exit(2)
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    jax_cache.enable()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: click's usage errors (a bad option value, an unknown option) become one
    ``error:`` line with exit code 2 instead of a boxed usage message."""
    try:
        code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `tuner` alone: the help text
            out.print(exc.format_message(), markup=False)
            sys.exit(0)
        message = exc.format_message().replace("\n", " ")
        err.print(f"error: {message}", markup=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("interrupted", markup=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
