"""The ``tuner`` command. Thin: each command parses options and calls one library function.

Heavy imports (Keras, TensorFlow, Optuna) happen inside the commands, after ``--backend`` has
set ``KERAS_BACKEND``, so ``tuner --help`` is instant.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from tuner.errors import TunerError
from tuner.ui.console import epoch_line, err, fmt, out
from tuner.vae import jax_cache

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
    jax_cache.enable()


@command
def train(
    config: Annotated[Path, typer.Argument(help="training config (YAML or JSON), e.g. one written by `tuner export`")],
    epochs: Annotated[Optional[int], typer.Option(help="override training.epochs")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for config, weights and metrics")] = Path(
        "runs/latest"
    ),
) -> None:
    """Train one configuration and save config, weights and per-epoch metrics."""
    from tuner.config import load_train_config
    from tuner.vae.training import save_run
    from tuner.vae.training import train as train_config

    cfg = load_train_config(config)
    total = epochs or cfg.training.epochs
    result = train_config(cfg, epochs=epochs, hooks=[lambda e, m: out.print(epoch_line(e + 1, total, m))])
    save_run(result, out_dir)
    out.print(f"val ELBO {fmt(result.val_elbo)} nats per image; saved to {out_dir}")


@command
def evaluate(
    run_dir: Annotated[
        Path, typer.Argument(help="a directory written by `tuner train`, or best.yaml from `tuner export --weights`")
    ],
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
    from tuner.vae.evaluation import evaluate as evaluate_model
    from tuner.vae.training import load_run

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
    from tuner.distributed.signals import stop_on_sigterm
    from tuner.report.dashboard import RefreshViews
    from tuner.search.study import run_study
    from tuner.search.study_file import load_study_config
    from tuner.ui.progress import StudyProgress, best_text

    stop_on_sigterm()
    study_cfg = load_study_config(study_file)
    if study_name:
        study_cfg = study_cfg.model_copy(update={"name": study_name})
    url = storage_lib.resolve_url(storage, study_cfg.storage)
    total = study_cfg.n_trials(n_trials)
    store = storage_lib.artifact_store(url, artifacts or study_cfg.artifacts.path)
    out.print(f"study {study_cfg.name!r} on {storage_lib.redact(url)}; budget {total} finished trials", markup=False)
    with StudyProgress(total, 0) as progress:
        summary = run_study(
            study_cfg,
            url,
            n_trials=n_trials,
            timeout=timeout,
            artifact_store=store,
            heartbeat=storage_lib.Heartbeat(),
            callbacks=[progress, RefreshViews(store)],
        )
    out.print(
        f"{summary.finished_after} finished trials ({summary.finished_after - summary.finished_before} new) "
        f"in {summary.elapsed_s:.0f} s; {best_text(summary.study)}",
        markup=False,
    )


HeartbeatOpt = Annotated[int, typer.Option("--heartbeat", help="seconds between a running trial's heartbeats")]
GraceOpt = Annotated[
    int, typer.Option("--grace", help="seconds without heartbeat before a trial is failed and retried")
]


@command
def worker(
    study_file: Annotated[Optional[Path], typer.Argument(help="study file; or give --study and --storage")] = None,
    study: Annotated[Optional[str], typer.Option(help="join an existing study by name (its stored study file)")] = None,
    storage: StorageOpt = None,
    n_trials: Annotated[Optional[int], typer.Option(help="override the study's total budget")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="stop starting trials after this many seconds")] = None,
    artifacts: Annotated[Optional[str], typer.Option(help="artifact folder, shared by all workers")] = None,
    heartbeat: HeartbeatOpt = 10,
    grace: GraceOpt = 30,
    db_retry: Annotated[float, typer.Option(help="seconds to keep retrying a lost database connection")] = 300.0,
) -> None:
    """Join a study (creating it if needed) and run trials until its global budget is reached."""
    from tuner import storage as storage_lib
    from tuner.distributed.signals import stop_on_sigterm
    from tuner.distributed.worker import run_worker
    from tuner.report.dashboard import RefreshViews
    from tuner.search.study import stored_study_config
    from tuner.search.study_file import load_study_config
    from tuner.ui.progress import best_text, trial_line

    stop_on_sigterm()
    if study_file is None and study is None:
        raise TunerError("give a study file, or --study NAME with --storage URL (or TUNER_STORAGE)")
    file_cfg = load_study_config(study_file) if study_file else None
    url = storage_lib.resolve_url(storage, file_cfg.storage if file_cfg else None)
    if file_cfg is None:
        file_cfg = stored_study_config(study or "", storage_lib.open_storage(url))
    elif study:
        file_cfg = file_cfg.model_copy(update={"name": study})
    store = storage_lib.artifact_store(url, artifacts or file_cfg.artifacts.path)
    out.print(f"worker {os.getpid()} on study {file_cfg.name!r} at {storage_lib.redact(url)}", markup=False)
    summary = run_worker(
        file_cfg,
        url,
        n_trials=n_trials,
        timeout=timeout,
        artifact_store=store,
        heartbeat=storage_lib.Heartbeat(interval=heartbeat, grace=grace),
        retry_s=db_retry,
        callbacks=[lambda s, t: out.print(trial_line(t), markup=False), RefreshViews(store)],
        log=lambda m: err.print(m, markup=False),
    )
    out.print(
        f"worker done: study has {summary.finished_after} finished trials; {best_text(summary.study)}", markup=False
    )


@command
def launch(
    study_file: Annotated[Path, typer.Argument(help="study file")],
    workers: Annotated[int, typer.Option(help="number of local worker processes")] = 2,
    gpus: Annotated[Optional[str], typer.Option(help="comma-separated GPU ids, e.g. 0,1")] = None,
    trials_per_gpu: Annotated[int, typer.Option(help="workers sharing one GPU (memory is split between them)")] = 1,
    storage: StorageOpt = None,
    n_trials: Annotated[Optional[int], typer.Option(help="override the study's total budget")] = None,
    timeout: Annotated[
        Optional[float], typer.Option(help="workers stop starting trials after this many seconds")
    ] = None,
    heartbeat: HeartbeatOpt = 10,
    grace: GraceOpt = 30,
    log_dir: Annotated[Optional[Path], typer.Option(help="worker logs (default storage/logs/STUDY)")] = None,
) -> None:
    """Start N local workers on one study, pinned to GPUs, and show their combined progress."""
    from tuner import storage as storage_lib
    from tuner.distributed import launch as launch_lib
    from tuner.search.study_file import load_study_config

    study_cfg = load_study_config(study_file)
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    launch_lib.check_layout(workers, gpu_list, trials_per_gpu)
    url = storage_lib.resolve_url(storage, study_cfg.storage)
    extra = ["--heartbeat", str(heartbeat), "--grace", str(grace)]
    if n_trials is not None:
        extra += ["--n-trials", str(n_trials)]
    if timeout is not None:
        extra += ["--timeout", str(timeout)]
    logs = log_dir or storage_lib.DEFAULT_DIR / "logs" / study_cfg.name
    launch_lib.launch_study(
        study_file,
        study_cfg.name,
        url,
        workers=workers,
        gpus=gpu_list,
        trials_per_gpu=trials_per_gpu,
        worker_args=extra,
        log_dir=logs,
        total=study_cfg.n_trials(n_trials),
        console=out,
    )


@command
def status(
    study: Annotated[Optional[str], typer.Option(help="show one study only")] = None,
    storage: StorageOpt = None,
) -> None:
    """Studies in the storage: trials by state, best value and parameters."""
    from tuner import storage as storage_lib
    from tuner.ui.status import study_rows

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
    from tuner.search.export import export_trial

    url = storage_lib.resolve_url(storage)
    config, weights_path = export_trial(
        study, url, output, trial_number=trial, weights=weights, artifacts_path=artifacts
    )
    prov = config.provenance or {}
    out.print(f"exported trial {prov.get('trial')} of {study!r} ({prov.get('values')}) to {output}", markup=False)
    if weights_path:
        out.print(f"weights: {weights_path}", markup=False)


@command
def report(
    study: Annotated[str, typer.Option(help="study name")],
    storage: StorageOpt = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path("report.html"),
    artifacts: Annotated[Optional[str], typer.Option(help="artifact folder (default beside the storage)")] = None,
    best_views: Annotated[
        bool, typer.Option(help="rebuild the best model for reconstructions, samples and KL per unit")
    ] = True,
) -> None:
    """Write a self-contained HTML report (opens offline) of a study."""
    from tuner import storage as storage_lib
    from tuner.report.html import build_report, write_report
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage)
    study_obj = load_study(study, storage_lib.open_storage(url))
    store = storage_lib.artifact_store(url, artifacts)
    result = build_report(study_obj, storage_lib.redact(url), store, with_best=best_views)
    write_report(result, output)
    out.print(f"wrote {output} ({result.n_figures} figures, {output.stat().st_size / 1e6:.1f} MB)", markup=False)


@command
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="address to bind; loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
    artifacts: Annotated[Optional[str], typer.Option(help="artifact folder (default beside the storage)")] = None,
) -> None:
    """Serve optuna-dashboard on the study database, with the VAE views and artifacts."""
    from tuner import storage as storage_lib
    from tuner.report.dashboard import is_loopback, publish_vae_views, serve

    url = storage_lib.resolve_url(storage)
    db = storage_lib.open_storage(url)
    store = storage_lib.artifact_store(url, artifacts)
    import optuna

    for name in optuna.get_all_study_names(db):  # views of studies run before this version
        publish_vae_views(optuna.load_study(study_name=name, storage=db), store)
    if not is_loopback(host):
        err.print(
            f"warning: binding to {host}: optuna-dashboard has no authentication, so anyone who can reach "
            "this address can read and change your studies. Prefer an SSH tunnel to 127.0.0.1.",
            markup=False,
        )
    out.print(f"dashboard for {storage_lib.redact(url)} at http://{host}:{port}/ (Ctrl-C to stop)", markup=False)
    serve(db, store, host=host, port=port)


def main() -> None:
    app()
