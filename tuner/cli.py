"""The ``tuner`` command. Thin: each command parses options and calls one library function.

Heavy imports (Keras, TensorFlow, Optuna) happen inside the commands, after ``--backend`` has
set ``KERAS_BACKEND``, so ``tuner --help`` is instant.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from tuner.console import epoch_line, err, fmt, out
from tuner.errors import TunerError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Hyperparameter search for the KL weight (beta) of convolutional VAEs.",
)

StorageOpt = Annotated[
    Optional[str],
    typer.Option("--storage", help="SQLAlchemy URL or journal file; default $TUNER_STORAGE or sqlite under storage/"),
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


@app.callback()
def _global(
    backend: Annotated[
        Optional[str], typer.Option(help="Keras backend: tensorflow (default) or jax; or set KERAS_BACKEND")
    ] = None,
) -> None:
    if backend:
        if backend not in ("tensorflow", "jax"):
            err.print(f"error: --backend: must be tensorflow or jax, got {backend!r}")
            raise typer.Exit(2)
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@command
def train(
    config: Annotated[Path, typer.Argument(help="training config (YAML or JSON), e.g. one written by `tuner export`")],
    epochs: Annotated[Optional[int], typer.Option(help="override training.epochs")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for config, weights and metrics")] = Path("runs/latest"),
) -> None:
    """Train one configuration and save config, weights and per-epoch metrics."""
    from tuner.config import load_train_config
    from tuner.training import save_run, train as train_config

    cfg = load_train_config(config)
    total = epochs or cfg.training.epochs
    result = train_config(cfg, epochs=epochs, hooks=[lambda e, m: out.print(epoch_line(e + 1, total, m))])
    save_run(result, out_dir)
    out.print(f"val ELBO {fmt(result.val_elbo)} nats per image; saved to {out_dir}")


@command
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a directory written by `tuner train`")],
    split: Annotated[str, typer.Option(help="test or val")] = "test",
    k: Annotated[int, typer.Option("--k", help="importance samples for the IWAE NLL (0 to skip)")] = 5000,
    n: Annotated[Optional[int], typer.Option(help="evaluate only the first N images")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the results here")] = None,
) -> None:
    """ELBO, importance-weighted NLL, active units and a diagnosis of the usual failures."""
    if split not in ("test", "val"):
        raise TunerError(f"--split: must be test or val, got {split!r}")
    if k < 0:
        raise TunerError(f"--k: must be >= 0, got {k}")
    from tuner.evaluation import evaluate as evaluate_model
    from tuner.training import load_run

    _, model, splits = load_run(run_dir)
    images = getattr(splits, split)[:n]
    result = evaluate_model(model, images, split=split, k=k)
    out.print(f"{split}: {result.n_images} images")
    out.print(f"  ELBO            {fmt(result.elbo)} nats  (recon {fmt(result.recon)}, KL {fmt(result.kl)})")
    if result.nll_iwae is not None:
        out.print(f"  NLL (IWAE k={k})  {fmt(result.nll_iwae)} nats")
    out.print(f"  active units    {result.active_units} / {result.latent_dim}")
    out.print("  KL per dim      " + " ".join(fmt(v, 2) for v in result.kl_per_dim))
    for line in result.diagnosis:
        out.print(f"  {line}")
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def main() -> None:
    app()
