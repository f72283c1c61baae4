"""Error types that drive control flow (after KerasTuner's ``errors.py``).

* :class:`TunerError` is a user's mistake (bad file, bad URL, bad data). The CLI prints its
  message as one line and exits non-zero, never with a traceback.
* :class:`FailedTrialError` fails one trial; the study records the reason and goes on.
* :class:`FatalError` stops a whole study (for example too many consecutive failures).
"""

from __future__ import annotations


class TunerError(Exception):
    """A problem with the user's input; the message names the field or file and the fix."""

    exit_code = 1


class ConfigError(TunerError):
    """An invalid study or training file. One problem per line, ``field: message``."""

    exit_code = 2


class DataError(TunerError):
    """A dataset that cannot be loaded: missing file, wrong shape or dtype, empty folder."""


class StorageError(TunerError):
    """A storage URL that cannot be opened (wrong URL, credentials, unreachable server)."""


class FailedTrialError(Exception):
    """Fails the current trial only; the search goes on."""


class DivergenceError(FailedTrialError):
    """The training loss became NaN or infinite."""

    def __init__(self, step: int, learning_rate: float, loss: float) -> None:
        self.step = step
        self.learning_rate = learning_rate
        super().__init__(
            f"loss diverged ({loss}) at step {step} with learning rate {learning_rate:.3g}; "
            "lower the learning rate or the maximum beta"
        )


class FatalError(TunerError):
    """Stops the whole study."""
