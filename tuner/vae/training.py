"""Train one configuration: data → model → fit, with β applied per step and val ELBO per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import keras

from tuner._compat import keras_rng_utils
from tuner.config import TrainConfig, validate
from tuner.errors import DivergenceError
from tuner.vae.batches import TrainBatches, resolve_batch_size, steps_per_epoch, validation_batch_size
from tuner.vae.builders import build_user_networks
from tuner.vae.curves import CURVE_FIELDS, CurveRow
from tuner.vae.data import Splits, load_splits
from tuner.vae.likelihoods import choose_likelihood, get_likelihood
from tuner.vae.lr_schedules import LRSchedule, build_lr_schedule
from tuner.vae.model import VAE
from tuner.vae.scan_steps import resolve_fused_steps
from tuner.vae.schedules import BetaController, BetaSchedule, build_schedule
from tuner.vae.shapes import resolve_filters

# Called after every epoch with (epoch from 1, that epoch's metrics); a study uses it to store
# curves, report to Optuna and prune (by raising optuna.TrialPruned).
EpochHook = Callable[[int, CurveRow], None]


@dataclass
class TrainResult:
    config: TrainConfig
    model: VAE
    schedule: BetaSchedule
    history: list[CurveRow] = field(default_factory=list)
    steps_per_epoch: int = 0

    @property
    def val_elbo(self) -> float:
        """The last epoch's val ELBO, or with early stopping (``training.patience``) the best
        one, whose weights the model holds."""
        if self.config.training.patience is not None:
            return max(row["val_elbo"] for row in self.history)
        return self.history[-1]["val_elbo"]


class DivergenceGuard(keras.callbacks.Callback):
    """Stops at the first non-finite training loss and says at which step and learning rate.

    Keras's ``TerminateOnNaN`` only stops (or raises a bare RuntimeError); a study needs a
    typed error carrying the step and the learning rate to fail just this trial.

    ``async_safe``: Keras then calls the batch hook from a helper thread, so reading the loss
    never blocks the dispatch of the next steps (a per-step device sync costs up to a third of
    the throughput of a small VAE); the error surfaces in fit() a step or two later.
    """

    async_safe = True

    def __init__(self, steps_per_epoch: int, learning_rate: float) -> None:
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.learning_rate = learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise DivergenceError(self.epoch * self.steps_per_epoch + batch + 1, self.learning_rate, loss)


class EpochRecorder(keras.callbacks.Callback):
    """Collects each epoch's metrics with its wall time and end-of-epoch β, then calls hooks."""

    def __init__(self, schedule: BetaSchedule, steps_per_epoch: int, hooks: list[EpochHook]) -> None:
        super().__init__()
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.hooks = hooks
        self.history: list[CurveRow] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        for key in ("elbo", "val_elbo"):
            if not math.isfinite(logs.get(key, math.nan)):
                step = (epoch + 1) * self.steps_per_epoch
                lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
                raise DivergenceError(step, lr, logs.get(key, math.nan))
        extra = {
            "epoch": epoch + 1,
            "beta_end": self.beta_end(epoch),
            "epoch_time": time.perf_counter() - self._start,
        }
        # Exactly the fields of CurveRow (Keras's val_beta, always 1, is left out).
        row = cast(CurveRow, {name: extra.get(name, logs.get(name, math.nan)) for name in CURVE_FIELDS})
        self.history.append(row)
        for hook in self.hooks:
            hook(epoch + 1, row)

    def beta_end(self, epoch: int) -> float:
        """β after the last step of ``epoch`` (from 0): a controller's, as its state holds it."""
        if isinstance(self.schedule, BetaController):
            return float(keras.ops.convert_to_numpy(self.model.beta_state)[0])
        return float(self.schedule.values([(epoch + 1) * self.steps_per_epoch])[0])


@dataclass(frozen=True)
class TrainPlan:
    """What a run of ``config`` on given data will be, worked out once (:func:`prepare`): the
    config as it will train (the likelihood ``auto`` picks, the epochs asked for), the optimizer
    steps per epoch, and β as a function of the step. A study trial stores this plan before it
    trains; :func:`train` trains it."""

    config: TrainConfig
    steps_per_epoch: int
    schedule: BetaSchedule  # a BetaController for the families that set β from a target

    @property
    def epochs(self) -> int:
        return self.config.training.epochs


def prepare(config: TrainConfig, splits: Splits, *, epochs: int | None = None) -> TrainPlan:
    """The plan of training ``config`` on ``splits`` (``epochs`` overrides the config's; the β
    schedule follows).

    Raises:
        DataError: a likelihood that does not fit the data (see :func:`resolve_likelihood`).
    """
    if epochs is not None:
        config = config.model_copy(update={"training": config.training.model_copy(update={"epochs": epochs})})
    config = resolve_likelihood(config, splits)  # the saved config names the likelihood used
    batch = resolve_batch_size(config.training.batch_size, len(splits.train))
    if batch != config.training.batch_size:  # likewise the batch size
        config = config.model_copy(update={"training": config.training.model_copy(update={"batch_size": batch})})
    steps = steps_per_epoch(len(splits.train), batch)
    pixels = math.prod(splits.image_shape)
    return TrainPlan(config, steps, build_schedule(config.schedule, steps, config.training.epochs, pixels))


def build_model(
    config: TrainConfig,
    image_shape: tuple[int, int, int],
    steps_per_epoch: int,
    schedule: BetaSchedule | None = None,
) -> VAE:
    """``config``'s VAE for images of ``image_shape``, compiled; ``schedule``: β in optimizer
    steps (a :class:`TrainPlan`'s; by default built from the config)."""
    if schedule is None:
        schedule = build_schedule(config.schedule, steps_per_epoch, config.training.epochs, math.prod(image_shape))
    likelihood = "bernoulli" if config.model.likelihood == "auto" else config.model.likelihood
    networks = None
    if config.model.builder:
        networks = build_user_networks(
            config.model.builder,
            image_shape,
            config.model.latent_dim,
            get_likelihood(likelihood).params_per_channel,
            config.model.model_dump(mode="json"),
        )
    model = VAE(
        image_shape,
        latent_dim=config.model.latent_dim,
        filters=resolve_filters(config.model.filters, image_shape),
        schedule=schedule,
        free_bits=config.schedule.free_bits,
        dynamic_binarization=config.data.dynamic_binarization,
        seed=config.training.seed,
        fused_steps=resolve_fused_steps(config.training.fused_steps),
        # "auto" only before resolve_likelihood(); a model built straight from such a config
        # (tests, old runs) keeps the original Bernoulli decoder.
        likelihood=likelihood,
        objective=config.training.objective,
        iwae_k=config.training.iwae_k,
        log_var_clip=(config.model.log_var_clip[0], config.model.log_var_clip[1])
        if config.model.log_var_clip
        else None,
        block=config.model.block,
        depth=config.model.depth,
        hidden=config.model.hidden,
        networks=networks,
    )
    optimizer_cls = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[config.training.optimizer]
    # A constant rate stays a plain float (a variable), as before schedules existed.
    learning_rate: float | LRSchedule = config.training.learning_rate
    if config.training.lr_schedule != "constant":
        learning_rate = build_lr_schedule(config.training, steps_per_epoch, config.training.epochs)
    model.compile(
        optimizer=optimizer_cls(learning_rate=learning_rate),
        jit_compile=config.training.jit_compile,
        steps_per_execution=config.training.steps_per_execution,
    )
    model.build((None, *image_shape))
    # Create the optimizer's slots now: created inside the first compiled step instead, they
    # make TensorFlow trace the training step twice (~0.5–1 s of every trial on a CPU).
    model.optimizer.build(model.trainable_variables)
    return model


def resolve_likelihood(config: TrainConfig, splits: Splits) -> TrainConfig:
    """``config`` with ``model.likelihood`` decided from the data when it is ``auto`` (and
    checked against the data otherwise; see :func:`~tuner.vae.likelihoods.choose_likelihood`).

    Raises:
        DataError: Bernoulli on grey data that is not dynamically binarized, or a discretized
            logistic on data that is not 8-bit.
    """
    chosen = choose_likelihood(config.model.likelihood, splits.train, config.data.dynamic_binarization)
    return config if chosen == config.model.likelihood else with_likelihood(config, chosen)


REFIT_EPOCHS = 1000  # an upper bound: early stopping ends a refit (Burda et al.: 3,280 epochs)
REFIT_PATIENCE = 50  # the VampPrior code's patience, in epochs


def refit_config(config: TrainConfig, epochs: int | None = None, patience: int | None = None) -> TrainConfig:
    """A study trial's config made to train to convergence: ``epochs`` (default
    :data:`REFIT_EPOCHS`), early stopping after ``patience`` epochs without a better val ELBO
    (default :data:`REFIT_PATIENCE`), and a constant learning rate turned into Burda et al.'s
    step decay from the same starting rate (a schedule the config already names is kept). The
    β schedule keeps its warm-up in epochs."""
    training = config.training
    update: dict[str, object] = {
        "epochs": epochs or max(REFIT_EPOCHS, training.epochs),
        "patience": patience or training.patience or REFIT_PATIENCE,
    }
    if training.lr_schedule == "constant":
        update["lr_schedule"] = "step_decay"
    content = config.model_dump()
    content["training"].update(update)
    return validate(TrainConfig, content, "refit")  # e.g. --epochs shorter than the β warm-up


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow under another backend.

    Keras seeds TensorFlow whenever it is installed (for ``tf.data`` pipelines), so every JAX
    process on a machine with TensorFlow (the default install) paid its import: a process
    training one tiny trial took 9.1-9.5 s and 1.20 GB with it, 7.1-7.4 s and 0.73 GB without.
    Nothing here uses TensorFlow under JAX.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    rng_utils = keras_rng_utils()
    if rng_utils is None:  # moved in a newer Keras: seed as Keras does
        keras.utils.set_random_seed(seed)
        return
    lazy_tf = rng_utils.tf
    rng_utils.tf = _Unavailable()
    try:
        keras.utils.set_random_seed(seed)  # Python, NumPy, Keras's global seed generator
    finally:
        rng_utils.tf = lazy_tf


class _Unavailable:
    available = False


def plan_epochs(config: TrainConfig, splits: Splits, seconds: float) -> tuple[int, float]:
    """How many epochs of ``config`` fit in ``seconds`` of training (at least 1), and one
    epoch's seconds.

    A two-epoch probe times them: its second epoch is a steady one (training and validation);
    what the probe spent outside its steady epochs (model build, compilation, fit set-up) is
    charged again for the real run, whose learning-rate schedule has other constants. The
    probe's own time counts against ``seconds``, so a planned refit ends within the budget
    whatever the card.
    """
    start = time.perf_counter()
    history = train(config, splits, epochs=2).history
    probe = time.perf_counter() - start
    steady = history[1]["epoch_time"]
    setup = max(0.0, probe - 2 * steady)  # everything but two steady epochs
    return max(1, int((seconds - probe - setup) / steady)), steady


def train(
    config: TrainConfig | TrainPlan,
    splits: Splits | None = None,
    *,
    epochs: int | None = None,
    hooks: list[EpochHook] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int = 0,
) -> TrainResult:
    """Train ``config`` (or a plan that :func:`prepare` made of it on ``splits``); ``epochs``
    overrides ``config.training.epochs`` (the schedule follows). ``model.likelihood: auto`` is
    resolved from the training images first; the result's config holds the likelihood used."""
    if isinstance(config, TrainPlan):
        if splits is None or epochs is not None:
            raise TypeError("train(plan) needs the splits the plan was made on, and takes no epochs")
        plan = config
    else:
        splits = splits if splits is not None else load_splits(config.data)
        plan = prepare(config, splits, epochs=epochs)
    config, steps = plan.config, plan.steps_per_epoch
    training = config.training
    batch = resolve_batch_size(training.batch_size, len(splits.train))  # resolved by prepare() already
    set_random_seed(training.seed)
    if training.mixed_precision:
        # Under "mixed_float16" Model.compile wraps the optimizer in a LossScaleOptimizer
        # (auto_scale_loss), which keeps small float16 gradients from flushing to zero.
        keras.config.set_dtype_policy(f"mixed_{training.mixed_precision}")
    try:
        model = build_model(config, splits.image_shape, steps, plan.schedule)
        recorder = EpochRecorder(model.schedule, steps, list(hooks or []))
        guard = DivergenceGuard(steps, training.learning_rate)
        stopper = []
        if training.patience is not None:
            # Keras's own callback: stops after `patience` epochs without a better val ELBO
            # and puts the best epoch's weights back at the end of fit.
            stopper = [
                keras.callbacks.EarlyStopping(
                    monitor="val_elbo", mode="max", patience=training.patience, restore_best_weights=True
                )
            ]
        model.fit(
            TrainBatches(splits.train, batch, seed=training.seed, on_device=training.data_on_device),
            epochs=training.epochs,
            validation_data=(splits.val,),
            validation_batch_size=validation_batch_size(len(splits.val), max(batch, 500)),
            shuffle=False,  # TrainBatches reshuffles every epoch itself
            callbacks=[guard, recorder, *stopper, *(callbacks or [])],
            verbose=verbose,
        )
    finally:
        if training.mixed_precision:
            keras.config.set_dtype_policy("float32")
    return TrainResult(config, model, model.schedule, recorder.history, steps)


def with_likelihood(config: TrainConfig, likelihood: str) -> TrainConfig:
    """``config`` with ``model.likelihood`` set to ``likelihood``."""
    return config.model_copy(update={"model": config.model.model_copy(update={"likelihood": likelihood})})
