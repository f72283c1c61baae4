"""β schedules: β as a function of the optimizer step.

Each schedule is a small callable like Keras's learning-rate schedules: ``schedule(step)``
works on backend tensors (with ``keras.ops``) inside the compiled training step, and
:meth:`BetaSchedule.values` runs the same formula with NumPy for reports and pruning, so
reading a schedule never imports a deep-learning backend.
Lengths are in *optimizer steps*; study and training files give them in epochs and
:func:`from_epochs` converts them.

Every formula reads its numbers from a mapping shaped like :meth:`BetaSchedule.get_config`.
``schedule(step)`` uses the schedule's own numbers; the VAE passes tensors read from a
non-trainable variable instead (``schedule(step, params)``), so the compiled training step
does not depend on max_beta or the annealing length and one program serves every trial of a
family (JAX's persistent compilation cache then skips the compile for the next trial).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tuner.config import ScheduleConfig
from tuner.vae._schedule_base import StepSchedule

_check = StepSchedule.check


class BetaSchedule(StepSchedule):
    """Base class. Subclasses implement :meth:`formula` and :meth:`get_config`."""

    def __init__(self, max_beta: float) -> None:
        _check(
            math.isfinite(max_beta) and max_beta >= 0,
            f"Argument `max_beta` must be a finite number >= 0. Received: max_beta={max_beta}",
        )
        self.max_beta = float(max_beta)

    def __call__(self, step: Any, params: Mapping[str, Any] | None = None) -> Any:
        """β at ``step`` as a backend tensor; ``params`` (default: :meth:`get_config`) holds
        the formula's numbers."""
        from keras import ops

        step = ops.convert_to_tensor(step, dtype="float32")
        return self.formula(step, self.get_config() if params is None else params, ops)

    def formula(self, step: Any, p: Mapping[str, Any], xp: Any) -> Any:
        """β at ``step`` with the numbers in ``p``, written with the array namespace ``xp``
        (``keras.ops`` or NumPy: only functions both have)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"max_beta": self.max_beta}

    def numpy_formula(self, steps: np.ndarray) -> Any:
        return self.formula(steps, self.get_config(), np)

    def settled_from(self) -> float:
        """First step from which β is held at ``max_beta`` (for schedule-aware pruning)."""
        return 0.0

    def is_settled(self, step: float) -> bool:
        """Whether β is at its plateau at ``step``; a pruner waits for this (see pruning.py)."""
        return step >= self.settled_from()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()


class Constant(BetaSchedule):
    """β(t) = max_beta."""

    name = "constant"

    def formula(self, step: Any, p: Mapping[str, Any], xp: Any) -> Any:
        return xp.zeros_like(step) + p["max_beta"]


class LinearWarmup(BetaSchedule):
    """β(t) = β_start + (max_beta − β_start) · min(1, t / T)."""

    name = "linear"

    def __init__(self, max_beta: float, warmup_steps: float, beta_start: float = 0.0) -> None:
        super().__init__(max_beta)
        _check(
            warmup_steps > 0,
            f"Argument `warmup_steps` must be > 0. Received: warmup_steps={warmup_steps}",
        )
        _check(
            0 <= beta_start <= max_beta,
            "Argument `beta_start` must be between 0 and max_beta. "
            f"Received: beta_start={beta_start}, max_beta={max_beta}",
        )
        self.warmup_steps = float(warmup_steps)
        self.beta_start = float(beta_start)

    def formula(self, step: Any, p: Mapping[str, Any], xp: Any) -> Any:
        progress = xp.minimum(1.0, step / p["warmup_steps"])
        return p["beta_start"] + (p["max_beta"] - p["beta_start"]) * progress

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "warmup_steps": self.warmup_steps, "beta_start": self.beta_start}

    def settled_from(self) -> float:
        return self.warmup_steps


class Cyclical(BetaSchedule):
    """Fu et al. (2019): ``n_cycles`` cycles over ``total_steps``; in each cycle β rises
    linearly from 0 to max_beta over the first ``ratio`` of the cycle, then stays there."""

    name = "cyclical"

    def __init__(self, max_beta: float, total_steps: float, n_cycles: int = 4, ratio: float = 0.5) -> None:
        super().__init__(max_beta)
        _check(total_steps > 0, f"Argument `total_steps` must be > 0. Received: total_steps={total_steps}")
        _check(n_cycles >= 1, f"Argument `n_cycles` must be >= 1. Received: n_cycles={n_cycles}")
        _check(0 < ratio <= 1, f"Argument `ratio` must be in (0, 1]. Received: ratio={ratio}")
        self.total_steps = float(total_steps)
        self.n_cycles = int(n_cycles)
        self.ratio = float(ratio)

    @property
    def cycle_steps(self) -> float:
        return self.total_steps / self.n_cycles

    def formula(self, step: Any, p: Mapping[str, Any], xp: Any) -> Any:
        cycle = p["total_steps"] / p["n_cycles"]
        # Past the last cycle β stays at max_beta (training longer than planned).
        tau = xp.where(step >= p["total_steps"], 1.0, xp.mod(step, cycle) / cycle)
        return p["max_beta"] * xp.minimum(1.0, tau / p["ratio"])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "total_steps": self.total_steps,
            "n_cycles": self.n_cycles,
            "ratio": self.ratio,
        }

    def settled_from(self) -> float:
        return self.ratio * self.cycle_steps

    def is_settled(self, step: float) -> bool:
        # Each cycle restarts at β = 0: only its hold phase is comparable with other trials.
        if step >= self.total_steps:
            return True
        return (step % self.cycle_steps) / self.cycle_steps >= self.ratio


class Sigmoid(BetaSchedule):
    """Logistic rise centred at T/2: β(t) = β_start + (max_beta − β_start) · σ(k (t/T − 1/2))."""

    name = "sigmoid"

    def __init__(self, max_beta: float, warmup_steps: float, steepness: float = 10.0, beta_start: float = 0.0) -> None:
        super().__init__(max_beta)
        _check(warmup_steps > 0, f"Argument `warmup_steps` must be > 0. Received: warmup_steps={warmup_steps}")
        _check(steepness > 0, f"Argument `steepness` must be > 0. Received: steepness={steepness}")
        _check(
            0 <= beta_start <= max_beta,
            "Argument `beta_start` must be between 0 and max_beta. "
            f"Received: beta_start={beta_start}, max_beta={max_beta}",
        )
        self.warmup_steps = float(warmup_steps)
        self.steepness = float(steepness)
        self.beta_start = float(beta_start)

    def formula(self, step: Any, p: Mapping[str, Any], xp: Any) -> Any:
        # σ(u) = (1 + tanh(u/2)) / 2: the same formula in both namespaces (NumPy has no sigmoid).
        rise = 0.5 * (1.0 + xp.tanh(0.5 * p["steepness"] * (step / p["warmup_steps"] - 0.5)))
        return p["beta_start"] + (p["max_beta"] - p["beta_start"]) * rise

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "warmup_steps": self.warmup_steps,
            "steepness": self.steepness,
            "beta_start": self.beta_start,
        }

    def settled_from(self) -> float:
        return self.warmup_steps


SCHEDULES: dict[str, type[BetaSchedule]] = {cls.name: cls for cls in (Constant, LinearWarmup, Cyclical, Sigmoid)}


def serialize(schedule: BetaSchedule) -> dict[str, Any]:
    return {"name": schedule.name, "config": schedule.get_config()}


def deserialize(data: dict[str, Any]) -> BetaSchedule:
    name = data.get("name")
    if name not in SCHEDULES:
        raise ValueError(f"Unknown beta schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name].from_config(dict(data.get("config", {})))


def from_epochs(
    name: str,
    *,
    max_beta: float,
    steps_per_epoch: int,
    total_epochs: int,
    anneal_epochs: float = 0.0,
    beta_start: float = 0.0,
    n_cycles: int = 4,
    ratio: float = 0.5,
    steepness: float = 10.0,
) -> BetaSchedule:
    """Build a schedule from lengths in epochs, as written in study and training files.

    ``anneal_epochs = 0`` means no annealing: every family then reduces to a constant β.
    For ``cyclical`` the cycles span ``anneal_epochs`` when it is > 0, else the whole run.
    """
    if name not in SCHEDULES:
        raise ValueError(f"Unknown beta schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    if steps_per_epoch < 1:
        raise ValueError(f"Argument `steps_per_epoch` must be >= 1. Received: steps_per_epoch={steps_per_epoch}")
    if name == "constant" or (anneal_epochs <= 0 and name != "cyclical"):
        return Constant(max_beta)
    if name == "linear":
        return LinearWarmup(max_beta, anneal_epochs * steps_per_epoch, beta_start)
    if name == "sigmoid":
        return Sigmoid(max_beta, anneal_epochs * steps_per_epoch, steepness, beta_start)
    span = anneal_epochs if anneal_epochs > 0 else total_epochs
    return Cyclical(max_beta, span * steps_per_epoch, n_cycles, ratio)


def build_schedule(config: ScheduleConfig, steps_per_epoch: int, total_epochs: int) -> BetaSchedule:
    """The schedule that a config's ``schedule`` section describes, in optimizer steps."""
    return from_epochs(
        config.name,
        max_beta=config.max_beta,
        steps_per_epoch=steps_per_epoch,
        total_epochs=total_epochs,
        anneal_epochs=config.anneal_epochs,
        beta_start=min(config.beta_start, config.max_beta),
        n_cycles=config.n_cycles,
        ratio=config.ratio,
        steepness=config.steepness,
    )
