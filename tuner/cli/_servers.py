"""``tuner dashboard``, ``storage-proxy`` and ``fail-stale``: serving and repairing a storage."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from tuner.cli._app import ArtifactsOpt, StorageOpt, _bindable, _positive, command
from tuner.errors import OptionError, StorageError, TunerError
from tuner.ui.console import err, out


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
    from tuner.report.dashboard_storage import shared_trial_cache
    from tuner.report.server import dashboard_app, is_loopback, serve

    url = storage_lib.resolve_url(storage)
    # One trial cache for the views drawn below and the pages served: the first page comes
    # from trials already read, and later ones read only new and unfinished trials.
    db = shared_trial_cache(storage_lib.open_storage(url, read_only=True))
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
    from tuner.storage import serve_proxy

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
    """Fail running trials whose worker is gone, and re-queue them (journal storage: it has no heartbeats).

    Databases and the gRPC proxy do this by themselves."""
    _positive("--older-than", older_than)
    from tuner import storage as storage_lib
    from tuner.distributed.reap import fail_stale as fail
    from tuner.search.records import load_study

    url = storage_lib.resolve_url(storage)
    found = load_study(
        study, storage_lib.open_storage(url, must_exist=True), storage_lib.describe(url)
    )  # writes, never creates
    failed = fail(found, numbers=trial, older_than_s=older_than)
    out.print(
        f"failed and re-queued {len(failed)} trial(s) of {study!r}: {failed}" if failed else "no running trial matched",
        markup=False,
    )
