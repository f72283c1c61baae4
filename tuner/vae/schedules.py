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


class BetaController(BetaSchedule):
    """β set during training by a feedback law toward a target, instead of a function of the step.

    The law runs inside the compiled training step: the VAE keeps the controller's state (β
    first, then the law's own memory) in a non-trainable variable, and at each step feeds
    :meth:`update` the batch's mean KL and reconstruction NLL (nats per image, no gradient);
    the β it returns weights that same step's KL. Like :meth:`BetaSchedule.formula`,
    :meth:`update` is written once for ``keras.ops`` and NumPy (:meth:`simulate` runs it on
    recorded measurements). β stays in [min_beta, max_beta].

    β(t) is known only once trained: :meth:`values` refuses, and reports read the β recorded
    per epoch. Until its target is reached a controller counts as warming up (see
    ``tuner/search/pruning.py``).
    """

    state_size = 2

    def __init__(self, target: float, min_beta: float = 0.0, max_beta: float = 1.0) -> None:
        super().__init__(max_beta)
        _check(
            math.isfinite(target) and target > 0,
            f"Argument `target` must be a finite number > 0. Received: target={target}",
        )
        _check(
            0 <= min_beta <= max_beta,
            f"Argument `min_beta` must be between 0 and max_beta. Received: min_beta={min_beta}, max_beta={max_beta}",
        )
        self.target = float(target)
        self.min_beta = float(min_beta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target": self.target, "min_beta": self.min_beta}

    def initial_state(self) -> list[float]:
        """The state before the first step: [β, the law's memory...]."""
        raise NotImplementedError

    def update(self, state: Any, kl: Any, recon: Any, p: Mapping[str, Any], xp: Any) -> Any:
        """The state after one step that measured ``kl`` and ``recon`` (batch means, nats per
        image), written with ``xp`` (``keras.ops`` or NumPy); its first entry is the step's β."""
        raise NotImplementedError

    def measured(self, row: Mapping[str, Any]) -> float:
        """What the law holds at its target, read from an epoch's curve row (training means)."""
        raise NotImplementedError

    def reached(self, measured: float, beta: float, tolerance: float = 0.1) -> bool:
        """Whether a controller has done what it can: ``measured`` within ``tolerance`` (relative)
        of the target, or β held at a bound (a target out of reach)."""
        at_bound = beta <= self.min_beta * (1 + 1e-3) + 1e-6 or beta >= self.max_beta * (1 - 1e-3)
        return abs(measured - self.target) <= tolerance * self.target or at_bound

    def simulate(self, kl: np.ndarray | list[float], recon: np.ndarray | list[float]) -> np.ndarray:
        """β at each step of a run that measured ``kl`` and ``recon``, with NumPy (float64)."""
        state = np.asarray(self.initial_state(), dtype="float64")
        betas = []
        for k, r in zip(np.asarray(kl, dtype="float64"), np.asarray(recon, dtype="float64"), strict=True):
            state = np.asarray(self.update(state, k, r, self.get_config(), np), dtype="float64")
            betas.append(state[0])
        return np.asarray(betas)

    def numpy_formula(self, steps: np.ndarray) -> Any:
        raise ValueError(f"β of a {self.name!r} controller depends on training; read the β recorded per epoch")

    def formula(self, step: Any, p: Mapping[str, Any], xp: Any) -> Any:
        return self.numpy_formula(step)

    def is_settled(self, step: float) -> bool:
        return False  # known only during training: the pruner reads the curves instead

    def settled_from(self) -> float:
        return math.inf


def _sigmoid(u: Any, xp: Any) -> Any:
    # σ(u) = (1 + tanh(u/2)) / 2: the same in both namespaces, and no exp overflow.
    return 0.5 * (1.0 + xp.tanh(0.5 * u))


class KLController(BetaController):
    """ControlVAE (Shao et al. 2020): a PI controller holding the KL at ``target`` nats per image.

    With the error e = target − KL of the step:
    P = Kp · σ(−e) (a non-linear proportional term, in (0, Kp));
    I ← clip(I − Ki · e, −Kp, max_beta − min_beta) (the integral; held inside the range where
    it can still move β, so it does not wind up against a bound);
    β = clip(P + I + min_beta, min_beta, max_beta).
    State: [β, I]; it starts at [min_beta, 0]. Defaults are the authors' image-generation ones.

    With ``relative=True`` the law reads e / target instead of e (as GECO reads its constraint):
    Ki is then per step and unit of *relative* error, and the integral is the published one
    with Ki / target. A study that searches the target needs this. With gains in nats, one Ki
    is too slow for a low target, where the β that holds it is large (5 nats on grey MNIST take
    β ≈ 16), and makes a high one oscillate, where the KL is most sensitive to β (β ≈ 0.6 holds
    30 nats on binarized MNIST; at Ki 0.05, β swung between 0 and 4 within an epoch).
    See benchmarks/controllers.py.
    """

    name = "control"

    def __init__(
        self,
        target: float,
        min_beta: float = 0.0,
        max_beta: float = 1.0,
        kp: float = 0.001,
        ki: float = 0.001,
        relative: bool = False,
    ) -> None:
        super().__init__(target, min_beta, max_beta)
        _check(math.isfinite(kp) and kp >= 0, f"Argument `kp` must be a finite number >= 0. Received: kp={kp}")
        _check(math.isfinite(ki) and ki > 0, f"Argument `ki` must be a finite number > 0. Received: ki={ki}")
        self.kp, self.ki, self.relative = float(kp), float(ki), bool(relative)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "kp": self.kp, "ki": self.ki}
        # Only when set: a law saved without it keeps its config and its weights' shapes.
        return {**config, "relative": True} if self.relative else config

    def initial_state(self) -> list[float]:
        return [self.min_beta, 0.0]

    def update(self, state: Any, kl: Any, recon: Any, p: Mapping[str, Any], xp: Any) -> Any:
        error = p["target"] - kl
        if "relative" in p:  # a float 1.0 among the law's numbers in the compiled step
            error = error / p["target"]
        proportional = p["kp"] * _sigmoid(-error, xp)
        integral = xp.clip(state[1] - p["ki"] * error, -p["kp"], p["max_beta"] - p["min_beta"])
        beta = xp.clip(proportional + integral + p["min_beta"], p["min_beta"], p["max_beta"])
        return xp.stack([beta, integral])

    def measured(self, row: Mapping[str, Any]) -> float:
        return float(row["kl"])


GECO_FLOOR = 1e-4  # β's least value under GECO: it changes β by factors, so β = 0 would stay 0


class DistortionController(BetaController):
    """GECO (Rezende & Viola 2018): the least KL that reconstructs to ``target`` nats per image.

    GECO minimises the KL under E[recon] ≤ κ with a Lagrange multiplier λ on the constraint,
    λ ← λ · exp(ν · C_ma): in this project's terms the loss recon + β·KL is λ·recon + KL divided
    by λ, so β = 1/λ. Per step, with the relative constraint C = recon/κ − 1 (one rate then
    fits targets of any size):
    C_ma ← C on the first engaged step, then decay · C_ma + (1 − decay) · C;
    β ← clip(β · exp(−rate · C_ma), max(min_beta, 1e-4), max_beta).
    The law engages at the first step whose reconstruction meets the target (C ≤ 0) and β holds
    its start until then: early in training every β misses the target, and λ would grow without
    bound (on MNIST β fell from 1 to 1e-4 within the first epoch, and the KL then grew to 300
    nats before β recovered; benchmarks/controllers.py). β starts at ``beta_start`` (default
    1: λ = 1, the paper's), inside the bounds; a target tighter than that β reaches needs a
    lower start. State: [β, C_ma, engaged steps].
    """

    name = "geco"
    state_size = 3

    def __init__(
        self,
        target: float,
        min_beta: float = 0.0,
        max_beta: float = 1.0,
        rate: float = 0.1,
        decay: float = 0.99,
        beta_start: float = 1.0,
    ) -> None:
        super().__init__(target, min_beta, max_beta)
        _check(math.isfinite(rate) and rate > 0, f"Argument `rate` must be a finite number > 0. Received: rate={rate}")
        _check(0 <= decay < 1, f"Argument `decay` must be in [0, 1). Received: decay={decay}")
        _check(max_beta >= GECO_FLOOR, f"Argument `max_beta` must be >= {GECO_FLOOR}. Received: max_beta={max_beta}")
        _check(
            math.isfinite(beta_start) and beta_start > 0,
            f"Argument `beta_start` must be a finite number > 0. Received: beta_start={beta_start}",
        )
        self.rate, self.decay, self.beta_start = float(rate), float(decay), float(beta_start)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "decay": self.decay, "beta_start": self.beta_start}

    def initial_state(self) -> list[float]:
        return [min(max(self.beta_start, self.min_beta, GECO_FLOOR), self.max_beta), 0.0, 0.0]

    def update(self, state: Any, kl: Any, recon: Any, p: Mapping[str, Any], xp: Any) -> Any:
        constraint = recon / p["target"] - 1.0
        engaged = xp.logical_or(state[2] > 0, constraint <= 0)
        average = xp.where(state[2] > 0, p["decay"] * state[1] + (1.0 - p["decay"]) * constraint, constraint)
        low = xp.maximum(p["min_beta"], GECO_FLOOR)
        moved = xp.clip(state[0] * xp.exp(-p["rate"] * average), low, p["max_beta"])
        return xp.stack(
            [
                xp.where(engaged, moved, state[0]),
                xp.where(engaged, average, state[1]),
                xp.where(engaged, state[2] + 1.0, state[2]),
            ]
        )

    def measured(self, row: Mapping[str, Any]) -> float:
        return float(row["recon"])


SCHEDULES: dict[str, type[BetaSchedule]] = {
    cls.name: cls for cls in (Constant, LinearWarmup, Cyclical, Sigmoid, KLController, DistortionController)
}


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
    if name not in SCHEDULES or issubclass(SCHEDULES[name], BetaController):
        families = sorted(n for n, cls in SCHEDULES.items() if not issubclass(cls, BetaController))
        raise ValueError(f"Unknown beta schedule {name!r}; choose one of {families}")
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


def build_schedule(
    config: ScheduleConfig, steps_per_epoch: int, total_epochs: int, pixels: int | None = None
) -> BetaSchedule:
    """The schedule that a config's ``schedule`` section describes, in optimizer steps
    (``pixels``: values per image, H·W·C, which a GECO target given per pixel needs)."""
    if config.name == "control":
        if config.target_kl is None:
            raise ValueError("schedule.target_kl: name control needs target_kl (nats per image)")
        return KLController(
            config.target_kl, config.min_beta, config.max_beta, config.kp, config.ki, config.relative_error
        )
    if config.name == "geco":
        if config.target_distortion is None:
            raise ValueError("schedule.target_distortion: name geco needs target_distortion")
        target = config.target_distortion
        if config.distortion_per == "pixel":
            if not pixels:
                raise ValueError("schedule.distortion_per: pixel needs the image size (pixels=H·W·C)")
            target *= pixels
        start = config.beta_start if config.beta_start > 0 else 1.0
        return DistortionController(
            target, config.min_beta, config.max_beta, config.geco_rate, config.geco_decay, start
        )
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
