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


@command
def run(
    study_file: Annotated[Path, typer.Argument(help="study file, e.g. studies/quickstart.yaml")],
    n_trials: Annotated[Optional[int], typer.Option(help="total finished trials wanted (counts earlier runs)")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="stop starting trials after this many seconds")] = None,
    storage: StorageOpt = None,
    study_name: Annotated[Optional[str], typer.Option(help="override the study name of the file")] = None,
    artifacts: Annotated[Optional[str], typer.Option(help="artifact folder (default beside the storage)")] = None,
) -> None:
    """Create or resume a study and run it until its budget of finished trials is reached."""
    from tuner import storage as storage_lib
    from tuner.progress import StudyProgress, best_text
    from tuner.study import n_finished, run_study
    from tuner.study_config import load_study_config

    study_cfg = load_study_config(study_file)
    if study_name:
        study_cfg = study_cfg.model_copy(update={"name": study_name})
    url = storage_lib.resolve_url(storage, study_cfg.storage)
    total = n_trials if n_trials is not None else study_cfg.budget.n_trials
    out.print(f"study {study_cfg.name!r} on {storage_lib.redact(url)}; budget {total} finished trials", markup=False)
    with StudyProgress(total, 0) as progress:
        summary = run_study(
            study_cfg, url, n_trials=n_trials, timeout=timeout, artifacts_path=artifacts,
            heartbeat=storage_lib.Heartbeat(), callbacks=[progress],
        )
    out.print(
        f"{summary.finished_after} finished trials ({summary.finished_after - summary.finished_before} new) "
        f"in {summary.elapsed_s:.0f} s; {best_text(summary.study)}",
        markup=False,
    )


@command
def status(
    study: Annotated[Optional[str], typer.Option(help="show one study only")] = None,
    storage: StorageOpt = None,
) -> None:
    """Studies in the storage: trials by state, best value and parameters."""
    from tuner import storage as storage_lib
    from tuner.status import study_rows

    url = storage_lib.resolve_url(storage)
    rows = study_rows(storage_lib.open_storage(url), study)
    if not rows:
        out.print(f"no studies in {storage_lib.redact(url)}", markup=False)
    for row in rows:
        out.print(row, markup=False)


@command
def export(
    study: Annotated[str, typer.Option(help="study name")],
    output: Annotated[Path, typer.Option("-o", "--output", help="best.yaml or best.json")] = Path("best.yaml"),
    trial: Annotated[Optional[int], typer.Option(help="trial number (default: the best trial)")] = None,
    weights: Annotated[bool, typer.Option("--weights", help="also copy the trial's weights beside the file")] = False,
    storage: StorageOpt = None,
    artifacts: Annotated[Optional[str], typer.Option(help="artifact folder (default beside the storage)")] = None,
) -> None:
    """Write a trial's complete training config (and weights) for `tuner train`."""
    from tuner import storage as storage_lib
    from tuner.export import export_trial

    url = storage_lib.resolve_url(storage)
    config, weights_path = export_trial(study, url, output, trial_number=trial, weights=weights, artifacts_path=artifacts)
    prov = config.provenance or {}
    out.print(f"exported trial {prov.get('trial')} of {study!r} ({prov.get('values')}) to {output}", markup=False)
    if weights_path:
        out.print(f"weights: {weights_path}", markup=False)


def main() -> None:
    app()
