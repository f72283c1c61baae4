"""Import Keras (and with it TensorFlow or JAX) without the log lines they print, on a backend
the project runs on.

TensorFlow 2.21 writes absl and oneDNN lines ("All log messages before absl::InitializeLog()
is called…", "oneDNN custom operations are on…", "Could not find cuda drivers…") straight to
file descriptor 2 while it loads, whatever ``TF_CPP_MIN_LOG_LEVEL`` says, so Python cannot
filter them. Commands that train import Keras through :func:`load_keras`, which points fd 2 at
/dev/null for the import only. After it, TensorFlow's Python loggers (``tf.get_logger()``, absl)
keep errors only: their warnings are about TensorFlow's internals, such as "5 out of the last 16
calls to <function TensorFlowTrainer._make_function…> triggered tf.function retracing", which
every study of more than a few trials in one process prints, since each trial builds a new
model.

The backend is checked before Keras loads (``KERAS_BACKEND`` must be ``tensorflow`` or ``jax``),
and a backend that cannot be imported is one :class:`~tuner.errors.OptionError` line, not
Keras's import traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from tuner.errors import OptionError, reason

BACKENDS = ("tensorflow", "jax")
BACKEND_ENV = "KERAS_BACKEND"
_EXTRAS = {"jax": "pip install -e '.[jax]'", "tensorflow": "pip install -e ."}


def backend_error(value: str, setting: str = BACKEND_ENV) -> str | None:
    """The one-line complaint about a backend name given as ``setting`` (``KERAS_BACKEND`` or
    ``--backend``), or None when the project runs on it."""
    if value in BACKENDS:
        return None
    if not value.strip():
        return f"{setting} is set but empty; unset it or set one of {' or '.join(BACKENDS)}"
    if setting.startswith("--"):
        return f"{setting}: must be {' or '.join(BACKENDS)}, got {value!r}"
    return f"{setting}={value}: tuner runs on {' or '.join(BACKENDS)}; unset it or set one of those"


def check_backend() -> None:
    """Raise :class:`OptionError` when ``KERAS_BACKEND`` names a backend the project does not run on."""
    value = os.environ.get(BACKEND_ENV)
    message = backend_error(value) if value is not None else None
    if message:
        raise OptionError(message)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quiet_python_loggers() -> None:
    """TensorFlow's and absl's Python loggers: errors only (see module docstring)."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _import_keras() -> ModuleType:
    requested = os.environ.get(BACKEND_ENV) or "tensorflow"
    setting = f"{BACKEND_ENV}={requested}" if os.environ.get(BACKEND_ENV) else "Keras's default backend (tensorflow)"
    install = _EXTRAS.get(requested, f"pip install {requested}")
    if os.environ.get(BACKEND_ENV) and not _installed(requested):
        # Said before Keras loads: its import would write ~/.keras/keras.json, then fail.
        raise OptionError(f"{setting}: {requested} is not installed; install it ({install}) or use the other backend")
    try:
        with _stderr_silenced():
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf  # its lazy parts log on first use otherwise

                tf.get_logger()  # sets up the "tensorflow" logger before its level is lowered
    except ImportError as exc:
        missing = exc.name or requested
        raise OptionError(
            f"{setting}: cannot import {missing} ({reason(exc)}); install it ({install}) or use the other backend"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a broken installation: one line, not Keras's traceback
        raise OptionError(f"{setting}: Keras cannot load its backend ({reason(exc)}); reinstall it") from None
    return keras


def load_keras() -> ModuleType:
    """Import Keras and its backend quietly (see module docstring); idempotent.

    Raises:
        OptionError: ``KERAS_BACKEND`` is not tensorflow or jax, the backend is not installed, or
            Keras's own configuration (``~/.keras/keras.json``) picked another backend.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
    else:
        check_backend()
        keras = _import_keras()
    _quiet_python_loggers()
    name = keras.backend.backend()
    if name not in BACKENDS:
        raise OptionError(
            f"Keras's backend is {name} (set in keras.json under ~/.keras or KERAS_HOME); tuner runs on "
            f"{' or '.join(BACKENDS)}: set {BACKEND_ENV}=tensorflow"
        )
    return keras


def on_accelerator() -> bool:
    """Whether Keras's backend computes on a GPU or TPU (not the CPU); loads Keras."""
    keras = load_keras()
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))
