"""What β schedules and learning-rate schedules share (Keras's ``LearningRateSchedule`` style).

Each is a small callable of the optimizer step whose formula is written once for
``keras.ops`` and NumPy; its arguments are checked at construction with the rule and the value
received, and ``get_config``/``from_config`` round-trip it. Nothing here imports a backend, so
reports and pruners read schedules without one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class StepSchedule:
    """Base of :class:`tuner.vae.schedules.BetaSchedule` and :class:`tuner.vae.lr_schedules.LRSchedule`.

    Subclasses implement ``get_config`` and :meth:`numpy_formula` (their formula evaluated with
    NumPy on float64 steps).
    """

    name: ClassVar[str] = ""

    @staticmethod
    def check(condition: bool, message: str) -> None:
        """Refuse a bad argument: ``message`` names it and the value received."""
        if not condition:
            raise ValueError(message)

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    def numpy_formula(self, steps: np.ndarray) -> Any:
        raise NotImplementedError

    def values(self, steps: np.ndarray | list[int] | int) -> np.ndarray:
        """The schedule at each of ``steps`` (at 0..steps-1 when an int) as a float64 NumPy array."""
        steps = np.arange(steps) if isinstance(steps, int) else np.asarray(steps)
        return np.asarray(self.numpy_formula(steps.astype("float64")), dtype="float64") * np.ones(steps.shape)
