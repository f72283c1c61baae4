"""Serving optuna-dashboard: its WSGI app behind two small layers of ours, and a server that
does not log every request. The VAE views it shows are drawn by :mod:`tuner.report.dashboard`.

optuna-dashboard's REST API answers without credentials, and some of it writes: anyone who
can reach it could delete a study (``DELETE /api/studies/N``), finish a running trial
(``POST /api/trials/N/tell``) or overwrite a curve. So the dashboard is **read-only by
default** (every method but GET and HEAD is refused; ``--allow-writes`` lifts that, for notes
and deletions), and can ask for a user name and password (HTTP basic auth) when it must
listen beyond loopback.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
from collections.abc import Callable, Iterable
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


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
READ_METHODS = ("GET", "HEAD")


def _json(start_response: Callable[..., Any], status: str, reason: str, headers: list[tuple[str, str]]) -> list[bytes]:
    body = json.dumps({"reason": reason}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
    return [body]


def read_only(app: WSGIApp) -> WSGIApp:
    """Refuse every request that could change the storage (405), whatever its path."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in READ_METHODS:
            reason = "this dashboard is read-only; restart it with `tuner dashboard --allow-writes` to change studies"
            return _json(start_response, "405 Method Not Allowed", reason, [("Allow", ", ".join(READ_METHODS))])
        return app(environ, start_response)

    return guarded


def basic_auth(app: WSGIApp, credentials: str) -> WSGIApp:
    """Ask for ``user:password`` (HTTP basic auth; use it behind TLS or an SSH tunnel)."""
    expected = "Basic " + base64.b64encode(credentials.encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", ""), expected):
            return _json(start_response, "401 Unauthorized", "log in", [("WWW-Authenticate", 'Basic realm="tuner"')])
        return app(environ, start_response)

    return guarded


# optuna-dashboard lays every attribute value out on one line (``white-space: nowrap``), so a
# trial's config or a curve row made its page 4,600 px wide in a 1,400 px window. Values wrap.
WRAP_VALUES_CSS = "main p.MuiTypography-body1 { white-space: pre-wrap !important; overflow-wrap: anywhere; }"


def with_style(app: WSGIApp, css: str) -> WSGIApp:
    """Add a ``<style>`` to every HTML page ``app`` serves (the dashboard's single page)."""
    tag = f"<style>{css}</style></head>".encode()

    def styled(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None  # write() is not used by optuna-dashboard's app

        chunks = app(environ, capture)  # WSGI apps call start_response before the body
        headers = captured["headers"]
        if not any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers):
            start_response(captured["status"], headers, captured["exc_info"])
            return chunks  # artifacts and API answers stream through untouched
        body = b"".join(chunks).replace(b"</head>", tag, 1)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))], captured["exc_info"])
        return [body]

    return styled


def dashboard_app(
    storage: BaseStorage, store: ArtifactStore, *, allow_writes: bool = False, auth: str | None = None
) -> WSGIApp:
    """optuna-dashboard's WSGI app, read-only unless ``allow_writes``, behind basic auth when
    ``auth`` ("user:password") is given. It reads ``storage`` through
    :class:`~tuner.report.dashboard_storage.DashboardStorage` (trials without their per-epoch
    curve rows but the last); give it a :func:`~tuner.report.dashboard_storage.shared_trial_cache`."""
    from optuna_dashboard import wsgi

    from tuner.report.dashboard_storage import DashboardStorage

    app: WSGIApp = with_style(wsgi(DashboardStorage(storage), artifact_store=store), WRAP_VALUES_CSS)
    if not allow_writes:
        app = read_only(app)
    if auth:
        app = basic_auth(app, auth)
    return app


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``app`` until interrupted (wsgiref, one thread, like optuna-dashboard's own
    ``run_server``, but without a log line per request)."""
    with make_server(host, port, app, handler_class=_QuietHandler) as server:
        server.serve_forever()
