"""``tuner run``, ``worker``, ``launch``, ``status``, ``export`` and ``report``: commands on studies."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tuner.cli._app import (
    ArtifactsOpt,
    DbRetryOpt,
    GraceOpt,
    HeartbeatOpt,
    StorageOpt,
    TimeoutOpt,
    TrialsOpt,
    _positive,
    _writable,
    command,
)
from tuner.errors import OptionError
from tuner.ui.console import err, fmt, out


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
    prepared = api.open_run(
        study_file, storage_url=storage, study_name=study_name, artifacts_dir=artifacts, retry_s=db_retry
    )
    total = prepared.study_config.n_trials(n_trials)
    out.print(
        f"study {prepared.study_config.name!r} on {storage_lib.describe(prepared.storage_url)}; "
        f"artifacts in {prepared.artifacts_dir.absolute()}; budget {total} finished trials",
        markup=False,
    )
    with StudyProgress(total) as progress:
        summary = prepared.run(
            n_trials=n_trials,
            timeout=timeout,
            callbacks=[progress],
            epoch_callbacks=[progress.epoch],
            on_open=progress.open,
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

    stop_on_signals()
    log = lambda m: err.print(m, markup=False)  # noqa: E731
    prepared = api.open_run(
        study_file,
        storage_url=storage,
        study_name=study,
        artifacts_dir=artifacts,
        heartbeat=storage_lib.Heartbeat(interval=heartbeat, grace=grace),
        retry_s=db_retry,
        worker=True,
        log=log,
        name_option="--study",
    )
    study_config = prepared.study_config
    out.print(
        f"worker {os.getpid()} on study {study_config.name!r} at {storage_lib.describe(prepared.storage_url)}; "
        f"artifacts in {prepared.artifacts_dir.absolute()}",
        markup=False,
    )
    # Plain lines: a worker's output is a log (Slurm, Kubernetes, `tuner launch`).
    progress = StudyProgress(study_config.n_trials(n_trials), live=False)
    summary = prepared.run(
        n_trials=n_trials,
        timeout=timeout,
        callbacks=[progress],
        epoch_callbacks=[progress.epoch],
        log=log,
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
    from tuner.distributed import launch as launch_lib

    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None  # "" or "0,": as before
    launch_lib.check_layout(workers, gpu_list, trials_per_gpu)  # first: it needs no file or data
    extra = ["--heartbeat", str(heartbeat), "--grace", str(grace)]
    if n_trials is not None:
        extra += ["--n-trials", str(n_trials)]
    if timeout is not None:
        extra += ["--timeout", str(timeout)]
    api.launch_study(
        study_file,
        workers=workers,
        gpus=gpu_list,
        trials_per_gpu=trials_per_gpu,
        storage_url=storage,
        n_trials=n_trials,
        worker_args=extra,
        log_dir=log_dir,
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
    rows = study_rows(storage_lib.open_storage(url, read_only=True), study, storage_lib.describe(url))
    out.print(f"{'studies' if rows else 'no studies'} in {storage_lib.describe(url)}", markup=False)
    for row in rows:
        out.print(row, markup=False)


def _only_study(url: str) -> str:
    """The name of the storage's one study; OptionError naming them when there are several."""
    import optuna

    from tuner import storage as storage_lib

    names = optuna.get_all_study_names(storage_lib.open_storage(url, read_only=True))
    if len(names) != 1:
        found = ", ".join(repr(n) for n in names) if names else "none"
        raise OptionError(f"--study: {storage_lib.describe(url)} holds {len(names)} studies ({found}); name one")
    return names[0]


@command
def export(
    study: Annotated[
        Optional[str], typer.Option(metavar="NAME", help="study name (default: the storage's only study)")
    ] = None,
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
    study = study if study is not None else _only_study(url)
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
        bool,
        typer.Option(
            help="the best trial's reconstructions, samples, KL per unit and the top trials across β, from the "
            "views each trial stored (older studies: rebuilt from the weights, which loads Keras and the data)"
        ),
    ] = True,
) -> None:
    """Write a self-contained HTML report (opens offline) of a study, or of several side by side."""
    from tuner import storage as storage_lib
    from tuner.report.html import build_comparison, build_report, write_report
    from tuner.search.records import load_study

    repeated = sorted({name for name in study if study.count(name) > 1})
    if repeated:
        raise OptionError(f"--study: {repeated[0]!r} given twice; name each study to compare once")
    _writable("--output", output)
    url = storage_lib.resolve_url(storage)
    opened = storage_lib.open_storage(url, read_only=True)
    studies = [load_study(name, opened, storage_lib.describe(url)) for name in study]
    if len(studies) > 1:
        result = build_comparison(studies, storage_lib.redact(url))
    else:
        store = storage_lib.artifact_store(url, artifacts)
        result = build_report(studies[0], storage_lib.redact(url), store, with_best=best_views)
    write_report(result, output)
    out.print(f"wrote {output} ({result.n_figures} figures, {output.stat().st_size / 1e6:.1f} MB)", markup=False)


@command
def delete(
    study: Annotated[str, typer.Option(metavar="NAME", help="the study to delete, with its trials and artifacts")],
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="delete without asking")] = False,
) -> None:
    """Delete a study, its trials and their artifacts (asks first unless --yes)."""
    from tuner import api
    from tuner import storage as storage_lib
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage)
    load_study(
        study, storage_lib.open_storage(url, read_only=True), storage_lib.describe(url)
    )  # no such study: said before asking
    if not yes:
        if not sys.stdin.isatty():
            raise OptionError(f"delete: give --yes to delete study {study!r} without a terminal to confirm on")
        if not typer.confirm(f"delete study {study!r} and its artifacts from {storage_lib.describe(url)}?"):
            out.print("nothing deleted", markup=False)
            return
    n_trials, n_artifacts = api.delete_study(study, storage_url=url, artifacts_dir=artifacts)
    out.print(f"deleted study {study!r}: {n_trials} trials, {n_artifacts} artifacts", markup=False)
