"""Serving optuna-dashboard: its WSGI app behind a small server of ours (no log line per
request). The VAE views it shows are drawn by :mod:`tuner.report.dashboard`."""

from __future__ import annotations

import ipaddress
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from optuna.storages import BaseStorage

from tuner.storage import ArtifactStore


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QuietHandler(WSGIRequestHandler):
    """wsgiref logs every request to the terminal; the dashboard polls every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(storage: BaseStorage, store: ArtifactStore, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard's WSGI app until interrupted (wsgiref, one thread, like
    optuna-dashboard's own ``run_server``, but without a log line per request)."""
    from optuna_dashboard import wsgi

    with make_server(host, port, wsgi(storage, artifact_store=store), handler_class=_QuietHandler) as server:
        server.serve_forever()
