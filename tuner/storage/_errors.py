"""How a storage failure reads: one line, naming the URL without its password.

Every refusal of the storage package goes through :func:`error`, and every exception text
it quotes (a driver's, Optuna's, SQLAlchemy's) through :func:`reason`: drivers put the full
URL, password included, and several lines of context into their messages, and a worker's
log line must hold neither.
"""

from __future__ import annotations

from tuner.errors import StorageError


def one_line(text: str) -> str:
    """``text`` with control characters escaped: a message always prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def error(message: str) -> StorageError:
    return StorageError(one_line(message))


def reason(exc: BaseException) -> str:
    """An exception's message, first line, password-free; for a database driver's error
    (SQLAlchemy's ``DBAPIError`` wraps it as ``orig``), the driver's own message."""
    from tuner.storage._urls import redact  # _urls refuses URLs through error(): imported here

    exc = getattr(exc, "orig", None) or exc
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return redact(first) if "://" in first else first
