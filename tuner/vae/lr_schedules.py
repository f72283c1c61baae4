"""Learning-rate schedules: the learning rate as a function of the optimizer step.

Short study trials train at a constant rate; a model trained to convergence needs a decaying
one (Burda et al. 2015 trained 3,280 epochs over eight stages at 1e-3·10^(−i/7)). Like the β
schedules (:mod:`tuner.vae.schedules`), each is a small callable with
``get_config``/``from_config``, written once for ``keras.ops`` and NumPy
(:meth:`LRSchedule.values`), with lengths in optimizer steps (:func:`build_lr_schedule`
converts the epochs of a config). They subclass Keras's ``LearningRateSchedule``, so the
optimizer evaluates them from its own step counter inside the compiled step, on TensorFlow
and JAX alike, and saves them with the model.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from tuner.config import TrainingConfig
from tuner.vae._schedule_base import StepSchedule

_check = StepSchedule.check


class LRSchedule(StepSchedule, keras.optimizers.schedules.LearningRateSchedule):
    """Base class: subclasses implement :meth:`formula` and :meth:`get_config`."""

    def __init__(self, learning_rate: float) -> None:
        _check(
            math.isfinite(learning_rate) and learning_rate > 0,
            f"Argument `learning_rate` must be > 0. Received: learning_rate={learning_rate}",
        )
        self.learning_rate = float(learning_rate)

    def __call__(self, step: Any) -> Any:
        from keras import ops

        return self.formula(ops.cast(step, "float32"), ops)

    def formula(self, step: Any, xp: Any) -> Any:
        raise NotImplementedError

    def numpy_formula(self, steps: np.ndarray) -> Any:
        return self.formula(steps, np)

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate}


@keras.saving.register_keras_serializable(package="tuner")
class ConstantLR(LRSchedule):
    name = "constant"

    def formula(self, step: Any, xp: Any) -> Any:
        return step * 0.0 + self.learning_rate


@keras.saving.register_keras_serializable(package="tuner")
class CosineLR(LRSchedule):
    """Linear warm-up from 0 over ``warmup_steps``, then a half cosine from ``learning_rate``
    down to ``min_ratio``·``learning_rate`` at ``total_steps``, held after it."""

    name = "cosine"

    def __init__(self, learning_rate: float, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> None:
        super().__init__(learning_rate)
        _check(total_steps > 0, f"Argument `total_steps` must be > 0. Received: total_steps={total_steps}")
        _check(
            0 <= warmup_steps < total_steps,
            f"Argument `warmup_steps` must be in [0, total_steps). Received: warmup_steps={warmup_steps}",
        )
        _check(0 <= min_ratio <= 1, f"Argument `min_ratio` must be in [0, 1]. Received: min_ratio={min_ratio}")
        self.total_steps, self.warmup_steps, self.min_ratio = int(total_steps), int(warmup_steps), float(min_ratio)

    def formula(self, step: Any, xp: Any) -> Any:
        warm = xp.minimum(1.0, (step + 1.0) / max(1, self.warmup_steps)) if self.warmup_steps else 1.0
        progress = xp.clip((step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 0.0, 1.0)
        cosine = self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + xp.cos(math.pi * progress))
        return self.learning_rate * warm * cosine

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "min_ratio": self.min_ratio,
        }


@keras.saving.register_keras_serializable(package="tuner")
class StepDecayLR(LRSchedule):
    """Burda et al. (2015): stage i lasts ``first_stage_steps``·growth^i steps at
    ``learning_rate``·``decay``^i (theirs: 1 epoch, growth 3, decay 10^(−1/7), 8 stages)."""

    name = "step_decay"

    def __init__(
        self, learning_rate: float, first_stage_steps: int, growth: float = 3.0, decay: float = 10 ** (-1 / 7)
    ) -> None:
        super().__init__(learning_rate)
        _check(first_stage_steps > 0, f"Argument `first_stage_steps` must be > 0. Received: {first_stage_steps}")
        _check(growth >= 1, f"Argument `growth` must be >= 1. Received: growth={growth}")
        _check(0 < decay <= 1, f"Argument `decay` must be in (0, 1]. Received: decay={decay}")
        self.first_stage_steps, self.growth, self.decay = int(first_stage_steps), float(growth), float(decay)

    def stage(self, step: Any, xp: Any) -> Any:
        # Stage i starts at first·(g^i − 1)/(g − 1) steps (first·i when g = 1).
        if self.growth == 1.0:
            return xp.floor(step / self.first_stage_steps)
        ratio = step * (self.growth - 1.0) / self.first_stage_steps + 1.0
        # A hair above the boundary so that float32 rounding never delays a stage by a step.
        return xp.floor(xp.log(ratio) / math.log(self.growth) + 1e-6)

    def formula(self, step: Any, xp: Any) -> Any:
        return self.learning_rate * xp.exp(self.stage(step, xp) * math.log(self.decay))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "first_stage_steps": self.first_stage_steps,
            "growth": self.growth,
            "decay": self.decay,
        }


def build_lr_schedule(config: TrainingConfig, steps_per_epoch: int, epochs: int) -> LRSchedule:
    """``config``'s learning-rate schedule, with its epochs turned into optimizer steps."""
    if config.lr_schedule == "cosine":
        return CosineLR(
            config.learning_rate,
            total_steps=epochs * steps_per_epoch,
            warmup_steps=min(round(config.lr_warmup_epochs * steps_per_epoch), epochs * steps_per_epoch - 1),
            min_ratio=config.lr_min_ratio,
        )
    if config.lr_schedule == "step_decay":
        return StepDecayLR(
            config.learning_rate,
            first_stage_steps=max(1, round(config.lr_stage_epochs * steps_per_epoch)),
            growth=config.lr_stage_growth,
            decay=config.lr_decay,
        )
    return ConstantLR(config.learning_rate)
