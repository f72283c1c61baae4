"""Import Keras (and with it TensorFlow or JAX) without the C++ log lines they print.

TensorFlow 2.21 writes absl and oneDNN lines ("All log messages before absl::InitializeLog()
is called…", "oneDNN custom operations are on…", "Could not find cuda drivers…") straight to
file descriptor 2 while it loads, whatever ``TF_CPP_MIN_LOG_LEVEL`` says, so Python cannot
filter them. Commands that train import Keras through :func:`load_keras`, which points fd 2 at
/dev/null for the import only; Python errors raised by the import still propagate.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType


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


def load_keras() -> ModuleType:
    """Import Keras and its backend quietly (see module docstring); idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    with _stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401 - its lazy parts log on first use otherwise
    return keras
