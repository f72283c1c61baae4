"""The ``tuner`` command. Thin: each command checks its options, then calls one function of
the library (:mod:`tuner.api` for most).

Keras (and TensorFlow or JAX) is imported only by the commands that train or evaluate, after
``--backend`` has set ``KERAS_BACKEND``; status, export, report, dashboard and the validation
of files never load it. Every user error, a bad option included, prints one ``error:`` line
and exits non-zero (2 for invalid files and options) before anything is created.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.exceptions import TyperException

from tuner import __version__
from tuner.errors import OptionError, StorageError, TunerError
from tuner.ui.console import epoch_line, err, fmt, out
from tuner.vae import jax_cache

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
    from tuner.paths import file_problem, folder_problem

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


@command
def train(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="training config (YAML or JSON), e.g. from `tuner export`")
    ],
    epochs: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="override training.epochs")] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="directory for config, weights and metrics")
    ] = Path("runs/latest"),
) -> None:
    """Train one configuration and save config, weights and per-epoch metrics."""
    from tuner import api
    from tuner.config import load_train_config

    cfg = load_train_config(config)
    _writable("--out", out_dir, "folder")
    total = epochs or cfg.training.epochs
    result = api.train(cfg, epochs=epochs, out=out_dir, hooks=[lambda e, m: out.print(epoch_line(e + 1, total, m))])
    out.print(
        f"val ELBO {fmt(result.val_elbo)} nats per image under {result.config.model.likelihood}; saved to {out_dir}",
        markup=False,
    )


MaxMemoryOpt = Annotated[
    float,
    typer.Option("--max-memory", metavar="GB", help="memory bound of the IWAE estimate's working set (same result)"),
]


def check_max_memory(max_memory: float) -> None:
    if not max_memory > 0 or max_memory > 1e6:
        raise OptionError(f"--max-memory: must be a number of GB > 0, got {max_memory}")


@command
def evaluate(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN", help="a folder written by `tuner train`, or best.yaml from `tuner export --weights`"
        ),
    ],
    split: Annotated[str, typer.Option(metavar="test|val", help="which split to score")] = "test",
    k: Annotated[
        int,
        typer.Option("--k", min=0, max=MAX_K, metavar="K", help="importance samples for the IWAE NLL (0: skip)"),
    ] = 5000,
    n: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="evaluate only the first N images")] = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", metavar="FILE", help="also write the results here")
    ] = None,
    max_memory: MaxMemoryOpt = 1.0,
) -> None:
    """ELBO, importance-weighted NLL, active units and a diagnosis of the usual failures."""
    if split not in ("test", "val"):
        raise OptionError(f"--split: must be test or val, got {split!r}")
    check_max_memory(max_memory)
    if json_out is not None:
        _writable("--json", json_out)
    from tuner.ui.progress import TaskProgress
    from tuner.vae.backend import load_keras

    load_keras()
    from tuner.vae.evaluation import evaluate as evaluate_model
    from tuner.vae.training import load_run

    _, model, splits = load_run(run_dir)
    images = getattr(splits, split)[:n]
    with TaskProgress(f"IWAE bound, k={k}, {len(images)} images", unit="samples") as progress:
        result = evaluate_model(model, images, split=split, k=k, on_progress=progress.update, max_memory=max_memory)
    out.print(f"{split}: {result.n_images} images, likelihood {result.likelihood}", markup=False)
    out.print(
        f"  ELBO            {fmt(result.elbo)} nats  (recon {fmt(result.recon)}, KL {fmt(result.kl)})", markup=False
    )
    if result.nll_iwae is not None:
        out.print(f"  NLL (IWAE k={k})  {fmt(result.nll_iwae)} nats under {result.likelihood}", markup=False)
    if result.bits_per_dim is not None:
        out.print(f"  bits per dim    {fmt(result.bits_per_dim, 4)}", markup=False)
    out.print(f"  active units    {result.active_units} / {result.latent_dim}", markup=False)
    out.print("  KL per dim      " + " ".join(fmt(v, 2) for v in result.kl_per_dim), markup=False)
    for line in result.diagnosis:
        out.print(f"  {line}", markup=False)
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


@command
def refit(
    study: Annotated[str, typer.Option(metavar="NAME", help="study whose best trial to retrain")],
    epochs: Annotated[
        Optional[int], typer.Option(min=1, metavar="N", help="at most this many epochs (default 1000)")
    ] = None,
    patience: Annotated[
        Optional[int], typer.Option(min=1, metavar="P", help="stop after P epochs without a better val ELBO (50)")
    ] = None,
    trial: Annotated[Optional[int], typer.Option(min=0, metavar="N", help="this trial instead of the best")] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", metavar="DIR", help="where to save (default runs/refit-NAME)")
    ] = None,
    k: Annotated[
        int, typer.Option("--k", min=1, max=MAX_K, metavar="K", help="importance samples for the test NLL")
    ] = 5000,
    time_budget: Annotated[
        Optional[float],
        typer.Option(
            min=1, metavar="S", help="train as many epochs as fit in S seconds (timed by a 2-epoch probe), at most N"
        ),
    ] = None,
    max_memory: MaxMemoryOpt = 1.0,
    storage: StorageOpt = None,
) -> None:
    """Retrain the best trial to convergence (decaying learning rate, early stopping) and
    report its test NLL; saved like `tuner train`."""
    import contextlib

    from tuner import api
    from tuner.ui.progress import TaskProgress

    check_max_memory(max_memory)
    out_path = out_dir or Path("runs") / f"refit-{study}"
    _writable("--out", out_path, "folder")
    limit = [epochs or 1000]

    def on_plan(planned: int, seconds: float) -> None:
        limit[0] = planned
        out.print(f"planned {planned} epochs in {fmt(time_budget, 0)} s ({fmt(seconds, 2)} s per epoch)", markup=False)

    with contextlib.ExitStack() as stack:
        bar: list[TaskProgress] = []

        def on_progress(done: int, total: int) -> None:
            if not bar:  # the bar (and its ETA) starts with the evaluation, after training
                bar.append(stack.enter_context(TaskProgress(f"test NLL (IWAE k={k})", unit="samples")))
            bar[0].update(done, total)

        result, test = api.refit(
            study,
            storage=storage,
            trial=trial,
            epochs=epochs,
            patience=patience,
            out=out_path,
            k=k,
            max_memory=max_memory,
            time_budget=time_budget,
            hooks=[lambda e, m: out.print(epoch_line(e + 1, limit[0], m))],
            on_plan=on_plan,
            on_progress=on_progress,
        )
    best = max(range(len(result.history)), key=lambda i: result.history[i]["val_elbo"])
    out.print(
        f"stopped after {len(result.history)} epochs; best val ELBO {fmt(result.val_elbo)} nats at epoch {best + 1}; "
        f"saved to {out_path}",
        markup=False,
    )
    out.print(f"test NLL (IWAE k={k}) {fmt(test.nll_iwae)} nats per image under {test.likelihood}", markup=False)
    if test.bits_per_dim is not None:
        out.print(f"  bits per dim    {fmt(test.bits_per_dim, 4)}", markup=False)
    for line in test.diagnosis:
        out.print(f"  {line}", markup=False)


@command
def run(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY", help="study file, e.g. studies/quickstart.yaml")],
    n_trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    storage: StorageOpt = None,
    study_name: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="override the study name of the file")
    ] = None,
    artifacts: ArtifactsOpt = None,
    db_retry: DbRetryOpt = 300.0,
) -> None:
    """Create or resume a study and run it until its budget of finished trials is reached."""
    _positive("--timeout", timeout)
    from tuner import api
    from tuner import storage as storage_lib
    from tuner.interrupts import stop_on_signals
    from tuner.ui.progress import StudyProgress, best_text

    stop_on_signals()
    study_cfg = api.load_study_file(study_file, study_name)
    url = storage_lib.resolve_url(storage, study_cfg.storage)
    total = study_cfg.n_trials(n_trials)
    out.print(f"study {study_cfg.name!r} on {storage_lib.describe(url)}; budget {total} finished trials", markup=False)
    with StudyProgress(total) as progress:
        summary = api.run_study(
            study_cfg,
            storage=url,
            n_trials=n_trials,
            timeout=timeout,
            artifacts=artifacts,
            callbacks=[progress],
            epoch_callbacks=[progress.epoch],
            on_open=progress.open,
            db_retry=db_retry,
            log=lambda m: progress.console.print(m, markup=False),
        )
    out.print(
        f"{summary.finished_after} finished trials ({summary.finished_after - summary.finished_before} new) "
        f"in {summary.elapsed_s:.0f} s; {best_text(summary.study)}",
        markup=False,
    )


@command
def worker(
    study_file: Annotated[
        Optional[Path], typer.Argument(metavar="[STUDY]", help="study file; or give --study and --storage")
    ] = None,
    study: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="join an existing study by name (its stored study file)")
    ] = None,
    storage: StorageOpt = None,
    n_trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    artifacts: ArtifactsOpt = None,
    heartbeat: HeartbeatOpt = 10,
    grace: GraceOpt = 30,
    db_retry: DbRetryOpt = 300.0,
) -> None:
    """Join a study (creating it if needed) and run trials until its global budget is reached."""
    _positive("--timeout", timeout)
    if study_file is None and study is None:
        raise OptionError("give a study file, or --study NAME with --storage URL (or TUNER_STORAGE)")
    from tuner import api
    from tuner import storage as storage_lib
    from tuner.interrupts import stop_on_signals
    from tuner.ui.progress import StudyProgress, best_text
    from tuner.vae.backend import load_keras

    stop_on_signals()
    file_cfg = api.load_study_file(study_file, study, option="--study") if study_file else None
    url = storage_lib.resolve_url(storage, file_cfg.storage if file_cfg else None)
    if file_cfg is None:
        from tuner.search.records import load_study, stored_study_config

        file_cfg = stored_study_config(load_study(study or "", storage_lib.open_storage(url, read_only=True)))
    load_keras()  # before the modules below import it: quietly (vae/backend.py)
    from tuner.distributed.worker import run_worker
    from tuner.report.dashboard import RefreshViews
    from tuner.search.artifacts import check_artifact_folder

    check_artifact_folder(storage_lib.artifacts_dir(url, artifacts or file_cfg.artifacts.path))
    store = storage_lib.artifact_store(url, artifacts or file_cfg.artifacts.path)
    out.print(f"worker {os.getpid()} on study {file_cfg.name!r} at {storage_lib.describe(url)}", markup=False)
    # Plain lines: a worker's output is a log (Slurm, Kubernetes, `tuner launch`).
    progress = StudyProgress(file_cfg.n_trials(n_trials), live=False)
    summary = run_worker(
        file_cfg,
        url,
        n_trials=n_trials,
        timeout=timeout,
        artifact_store=store,
        heartbeat=storage_lib.Heartbeat(interval=heartbeat, grace=grace),
        retry_s=db_retry,
        callbacks=[progress, RefreshViews(store)],
        epoch_callbacks=[progress.epoch],
        log=lambda m: err.print(m, markup=False),
    )
    out.print(
        f"worker done: study has {summary.finished_after} finished trials; {best_text(summary.study)}", markup=False
    )


@command
def launch(
    study_file: Annotated[Path, typer.Argument(metavar="STUDY", help="study file")],
    workers: Annotated[int, typer.Option(min=1, metavar="N", help="number of local worker processes")] = 2,
    gpus: Annotated[Optional[str], typer.Option(metavar="IDS", help="comma-separated GPU ids, e.g. 0,1")] = None,
    trials_per_gpu: Annotated[
        int, typer.Option(min=1, metavar="K", help="workers sharing one GPU (memory is split between them)")
    ] = 1,
    storage: StorageOpt = None,
    n_trials: TrialsOpt = None,
    timeout: TimeoutOpt = None,
    heartbeat: HeartbeatOpt = 10,
    grace: GraceOpt = 30,
    log_dir: Annotated[
        Optional[Path], typer.Option(metavar="DIR", help="worker logs (default logs/STUDY beside the storage)")
    ] = None,
) -> None:
    """Start N local workers on one study, pinned to GPUs, and show their combined progress."""
    _positive("--timeout", timeout)
    from tuner import api
    from tuner import storage as storage_lib
    from tuner.distributed import launch as launch_lib
    from tuner.vae.backend import check_backend
    from tuner.vae.data import load_splits

    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None  # "" or "0,": as before
    launch_lib.check_layout(workers, gpu_list, trials_per_gpu)  # first: it needs no file or data
    study_cfg = api.load_study_file(study_file)
    load_splits(study_cfg.base_config().data)  # bad data: one line here, not N failing workers
    check_backend()  # a bad KERAS_BACKEND: likewise
    url = storage_lib.resolve_url(storage, study_cfg.storage)
    # Beside a local storage, like its artifacts; under storage/ for a database server.
    local = storage_lib.sqlite_path(url) or storage_lib.journal_path(url)
    logs = log_dir or (local.parent if local else storage_lib.DEFAULT_DIR) / "logs" / study_cfg.name
    _writable("--log-dir", logs, "folder")
    extra = ["--heartbeat", str(heartbeat), "--grace", str(grace)]
    if n_trials is not None:
        extra += ["--n-trials", str(n_trials)]
    if timeout is not None:
        extra += ["--timeout", str(timeout)]
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
    study: Annotated[Optional[str], typer.Option(metavar="NAME", help="show one study only")] = None,
    storage: StorageOpt = None,
) -> None:
    """Studies in the storage: trials by state, best value and parameters."""
    from tuner import storage as storage_lib
    from tuner.ui.status import study_rows

    url = storage_lib.resolve_url(storage)
    rows = study_rows(storage_lib.open_storage(url, read_only=True), study)
    out.print(f"{'studies' if rows else 'no studies'} in {storage_lib.describe(url)}", markup=False)
    for row in rows:
        out.print(row, markup=False)


@command
def export(
    study: Annotated[str, typer.Option(metavar="NAME", help="study name")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="best.yaml or best.json")] = Path(
        "best.yaml"
    ),
    trial: Annotated[Optional[int], typer.Option(min=0, metavar="N", help="trial number (default: the best)")] = None,
    weights: Annotated[bool, typer.Option("--weights", help="also copy the trial's weights beside the file")] = False,
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
) -> None:
    """Write a trial's complete training config (and weights) for `tuner train`."""
    from tuner import storage as storage_lib
    from tuner.search.export import export_trial

    _writable("--output", output)
    url = storage_lib.resolve_url(storage)
    config, weights_path = export_trial(
        study, url, output, trial_number=trial, weights=weights, artifacts_path=artifacts
    )
    prov = config.provenance or {}
    values = ", ".join(f"{name} {fmt(value)}" for name, value in (prov.get("values") or {}).items())
    out.print(f"exported trial {prov.get('trial')} of {study!r} ({values}) to {output}", markup=False)
    if weights_path:
        out.print(f"weights: {weights_path}", markup=False)


@command
def report(
    study: Annotated[
        list[str], typer.Option(metavar="NAME", help="study name; give it twice to compare two studies side by side")
    ],
    storage: StorageOpt = None,
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE", help="HTML file to write")] = Path(
        "report.html"
    ),
    artifacts: ArtifactsOpt = None,
    best_views: Annotated[
        bool, typer.Option(help="rebuild the best model for reconstructions, samples and KL per unit")
    ] = True,
) -> None:
    """Write a self-contained HTML report (opens offline) of a study, or of several side by side."""
    from tuner import storage as storage_lib
    from tuner.report.html import build_comparison, build_report, write_report
    from tuner.search.records import load_study

    _writable("--output", output)
    url = storage_lib.resolve_url(storage)
    opened = storage_lib.open_storage(url, read_only=True)
    studies = [load_study(name, opened) for name in study]
    if len(studies) > 1:
        result = build_comparison(studies, storage_lib.redact(url))
    else:
        store = storage_lib.artifact_store(url, artifacts)
        if best_views:
            from tuner.vae.backend import load_keras

            load_keras()
        result = build_report(studies[0], storage_lib.redact(url), store, with_best=best_views)
    write_report(result, output)
    out.print(f"wrote {output} ({result.n_figures} figures, {output.stat().st_size / 1e6:.1f} MB)", markup=False)


@command
def dashboard(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="address to bind; loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="port")] = 8080,
    artifacts: ArtifactsOpt = None,
    allow_writes: Annotated[
        bool, typer.Option("--allow-writes", help="let the dashboard change studies (notes, deletions, tell)")
    ] = False,
    auth: Annotated[
        Optional[str],
        typer.Option(
            envvar="TUNER_DASHBOARD_AUTH",
            metavar="USER:PASSWORD",
            help="ask for this user and password (HTTP basic auth); prefer the environment variable",
        ),
    ] = None,
) -> None:
    """Serve optuna-dashboard on the study database, read-only by default, with the VAE views."""
    if auth is not None and (":" not in auth or not auth.split(":", 1)[1]):
        raise OptionError("--auth: give USER:PASSWORD, with a non-empty password")
    _bindable(host)
    import optuna

    from tuner import storage as storage_lib
    from tuner.report.dashboard import publish_vae_views
    from tuner.report.server import dashboard_app, is_loopback, serve

    url = storage_lib.resolve_url(storage)
    db = storage_lib.open_storage(url, read_only=True)
    if storage_lib.holds_nothing(db):  # it would serve an empty page that never fills
        raise StorageError(
            f"{storage_lib.describe(url)} holds no studies yet; start the dashboard after the first `tuner run` on it"
        )
    folder = storage_lib.artifacts_dir(url, artifacts)
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"--artifacts: {folder} is a file; give the folder the studies wrote their artifacts to")
    store = storage_lib.artifact_store(url, artifacts)
    for name in optuna.get_all_study_names(db):  # views of studies run before this version
        try:
            publish_vae_views(optuna.load_study(study_name=name, storage=db), store)
        except Exception as exc:  # noqa: BLE001 - a study with foreign or damaged attributes
            err.print(f"warning: study {name!r}: VAE views not drawn ({type(exc).__name__}: {exc})", markup=False)
    if not is_loopback(host) and not auth:
        err.print(
            f"warning: binding to {host} with no authentication: anyone who can reach this address can read "
            "your studies" + ("" if not allow_writes else " and change them") + ". Set --auth USER:PASSWORD "
            "(or TUNER_DASHBOARD_AUTH), or prefer an SSH tunnel to 127.0.0.1.",
            markup=False,
        )
    mode = "read-write" if allow_writes else "read-only"
    out.print(
        f"dashboard for {storage_lib.redact(url)} at http://{host}:{port}/ ({mode}; Ctrl-C to stop)", markup=False
    )
    try:
        serve(dashboard_app(db, store, allow_writes=allow_writes, auth=auth), host=host, port=port)
    except OSError as exc:
        raise TunerError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


@command
def storage_proxy(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="address to bind; loopback by default")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="port")] = 13000,
) -> None:
    """Serve a database to many workers over gRPC (workers use --storage grpc://HOST:PORT)."""
    _bindable(host)
    # gRPC's C core would log its own line ("Failed to add port") before our one-line error.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from tuner import storage as storage_lib
    from tuner.grpc_storage import serve_proxy

    url = storage_lib.resolve_url(storage)
    if storage_lib.grpc_address(url) is not None:
        raise OptionError("--storage: give the database the proxy serves, not another grpc:// URL")
    db = storage_lib.open_storage(url)
    out.print(f"storage proxy for {storage_lib.describe(url)} at grpc://{host}:{port} (Ctrl-C to stop)", markup=False)
    try:
        serve_proxy(db, host, port)
    except RuntimeError as exc:  # gRPC cannot bind the port
        raise TunerError(f"--host/--port: cannot listen on {host}:{port} ({exc})") from None


@command
def fail_stale(
    study: Annotated[str, typer.Option(metavar="NAME", help="study name")],
    storage: StorageOpt = None,
    trial: Annotated[
        Optional[list[int]], typer.Option(min=0, metavar="N", help="a running trial whose worker is gone (repeatable)")
    ] = None,
    older_than: Annotated[
        Optional[float], typer.Option(metavar="SECONDS", help="every running trial started longer ago than this")
    ] = None,
) -> None:
    """Fail running trials whose worker is gone, and re-queue them (for journal storage,
    which has no heartbeats; databases and the gRPC proxy do this by themselves)."""
    _positive("--older-than", older_than)
    from tuner import storage as storage_lib
    from tuner.distributed.reap import fail_stale as fail
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage)
    found = load_study(study, storage_lib.open_storage(url, must_exist=True))  # writes, never creates
    failed = fail(found, numbers=trial, older_than_s=older_than)
    out.print(
        f"failed and re-queued {len(failed)} trial(s) of {study!r}: {failed}" if failed else "no running trial matched",
        markup=False,
    )


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
