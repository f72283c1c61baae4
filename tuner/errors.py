"""Every error type of the project, each with the situation it is for (after KerasTuner's
``errors.py``). Error types drive control flow:

* :class:`TunerError` and its subclasses carry a message for the user. The CLI prints it as
  one line and exits non-zero (``exit_code``), never with a traceback.

  * :class:`ConfigError`, :class:`OptionError`, :class:`DataError`, :class:`StorageError`: the
    user's input is wrong (a study or training file, a command-line option, a dataset, a
    storage URL); the message names the field, option or file and the fix.
  * :class:`FatalError`: the input was valid but the study cannot go on (for example too many
    trials failed in a row); the message says what happened and what to change.

* :class:`FailedTrialError` fails one trial; the study records the reason and goes on.
* :class:`SurplusTrial` ends a worker whose trial started after the global budget was taken.
"""

from __future__ import annotations


class TunerError(Exception):
    """An error whose message is meant for the user; printed as one line."""

    exit_code = 1


class ConfigError(TunerError):
    """An invalid study or training file. One problem per line, ``field: message``."""

    exit_code = 2


class OptionError(TunerError):
    """A command-line option whose value the command cannot use (checked before anything is
    created)."""

    exit_code = 2


class DataError(TunerError):
    """A dataset that cannot be loaded: missing file, wrong shape or dtype, empty folder."""


class StorageError(TunerError):
    """A storage URL that cannot be opened (wrong URL, credentials, unreachable server)."""


class FatalError(TunerError):
    """Stops the whole study although every input was valid (e.g. consecutive failures)."""


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


class SurplusTrial(Exception):
    """A trial started after the global budget was already taken by other workers; it is
    recorded as skipped (it trains nothing) and its worker stops."""


def reason(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message on one line, at most ``limit`` characters (its type when empty): what
    an ``error:`` line quotes of a library's exception."""
    text = " ".join(str(exc).split())
    return text[:limit] if text else type(exc).__name__
