"""The convolutional VAE, written once with ``keras.ops`` for the TensorFlow and JAX backends.

β is applied inside the training step: a non-trainable step counter is read and advanced in
:meth:`VAE.call` (which runs under JAX's stateless ``stateless_call`` too), the schedule turns
it into β, and :meth:`VAE.compute_loss` weights the KL with it. Evaluation (``training=False``)
always uses β = 1, so validation ELBOs are comparable across trials.

The schedule's numbers and ``free_bits`` live in a non-trainable variable rather than in the
traced code: trials that differ only in them compile to the same program, which JAX's
persistent cache then serves without compiling (a new program costs seconds on a GPU, often
more than the training itself).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import layers, ops

from tuner.vae.scan_steps import ScanTrainSteps
from tuner.vae.schedules import BetaSchedule, Constant

# y_pred keys; every value is per example so predict() can concatenate batches.
RECON, KL, KL_PER_DIM, BETA = "recon", "kl", "kl_per_dim", "beta"


def bernoulli_nll(x: Any, logits: Any) -> Any:
    """−log p(x | logits) summed over pixels, in nats per image (x in [0, 1])."""
    per_pixel = ops.softplus(logits) - x * logits
    return ops.sum(ops.reshape(per_pixel, (ops.shape(per_pixel)[0], -1)), axis=-1)


def gaussian_kl(mean: Any, log_var: Any) -> Any:
    """KL(N(mean, exp(log_var)) || N(0, 1)) per latent dimension, in nats."""
    return 0.5 * (ops.exp(log_var) + ops.square(mean) - 1.0 - log_var)


def build_encoder(image_shape: tuple[int, int, int], filters: list[int], latent_dim: int) -> keras.Model:
    inputs = keras.Input(image_shape)
    h = inputs
    for width in filters:
        h = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Flatten()(h)
    # One dense layer gives mean and log-variance together: one matmul instead of two.
    stats = layers.Dense(2 * latent_dim)(h)
    return keras.Model(inputs, stats, name="encoder")


def build_decoder(image_shape: tuple[int, int, int], filters: list[int], latent_dim: int) -> keras.Model:
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    h0, w0 = math.ceil(height / scale), math.ceil(width / scale)
    inputs = keras.Input((latent_dim,))
    h = layers.Dense(h0 * w0 * filters[-1], activation="relu")(inputs)
    h = layers.Reshape((h0, w0, filters[-1]))(h)
    for width_ in reversed(filters):
        h = layers.Conv2DTranspose(width_, 3, strides=2, padding="same", activation="relu")(h)
    logits = layers.Conv2DTranspose(channels, 3, padding="same")(h)
    extra_h, extra_w = h0 * scale - height, w0 * scale - width
    if extra_h or extra_w:  # inputs whose size is not a multiple of 2**len(filters)
        logits = layers.Cropping2D(((0, extra_h), (0, extra_w)))(logits)
    return keras.Model(inputs, logits, name="decoder")


class VAE(ScanTrainSteps, keras.Model):
    """Gaussian posterior, standard normal prior, Bernoulli likelihood on [0, 1] pixels.

    The loss is reconstruction NLL + β·KL in nats per image; ``free_bits`` (λ, nats per
    latent dimension) floors each dimension's batch-mean KL in the training loss only
    (Kingma et al. 2016); the reported KL is always the true one.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int = 16,
        filters: list[int] | tuple[int, ...] = (32, 64),
        schedule: BetaSchedule | None = None,
        free_bits: float = 0.0,
        dynamic_binarization: bool = False,
        seed: int = 0,
        fused_steps: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        height, width, channels = image_shape
        self.image_shape = (int(height), int(width), int(channels))
        self.latent_dim = latent_dim
        self.filters = list(filters)
        self.schedule = schedule or Constant(1.0)
        self.free_bits = float(free_bits)
        self.dynamic_binarization = dynamic_binarization
        self.fused_steps = fused_steps  # see vae/scan_steps.py
        self.encoder = build_encoder(self.image_shape, self.filters, latent_dim)
        self.decoder = build_decoder(self.image_shape, self.filters, latent_dim)
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The step counter that drives β; it advances once per training batch, like the
        # optimizer's own counter, but is readable inside the step on every backend.
        self.beta_step = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="beta_step"
        )
        # [free_bits, then the schedule's numbers in get_config() order]
        schedule_config = self.schedule.get_config()
        self._schedule_keys = list(schedule_config)
        values = [self.free_bits, *schedule_config.values()]
        self.loss_params = self.add_weight(
            shape=(len(values),),
            dtype="float32",
            initializer="zeros",
            trainable=False,
            name="loss_params",
            autocast=False,  # the loss is float32 under mixed precision too
        )
        self.loss_params.assign(ops.convert_to_tensor(values, dtype="float32"))
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (RECON, KL, "elbo", BETA)}

    def encode(self, x: Any) -> tuple[Any, Any]:
        stats = ops.cast(self.encoder(x), "float32")
        mean, log_var = ops.split(stats, 2, axis=-1)
        return mean, log_var

    def call(self, x: Any, training: bool = False) -> dict[str, Any]:
        if training and self.dynamic_binarization:
            noise = keras.random.uniform(ops.shape(x), seed=self.seed_generator)
            x = ops.cast(noise < x, x.dtype)
        mean, log_var = self.encode(x)
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        z = mean + ops.exp(0.5 * log_var) * eps
        logits = ops.cast(self.decoder(z), "float32")
        recon = bernoulli_nll(ops.cast(x, "float32"), logits)
        kl_per_dim = gaussian_kl(mean, log_var)
        if training:
            params = {key: self.loss_params[i + 1] for i, key in enumerate(self._schedule_keys)}
            beta = self.schedule(ops.cast(self.beta_step, "float32"), params)
            self.beta_step.assign_add(1)
        else:
            beta = 1.0
        return {
            RECON: recon,
            KL: ops.sum(kl_per_dim, axis=-1),
            KL_PER_DIM: kl_per_dim,
            BETA: ops.zeros_like(recon) + beta,
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):  # noqa: D102
        kl_term = ops.sum(ops.maximum(ops.mean(y_pred[KL_PER_DIM], axis=0), self.loss_params[0]))
        return ops.mean(y_pred[RECON]) + ops.mean(y_pred[BETA]) * kl_term

    def compute_metrics(self, x, y, y_pred, sample_weight=None):  # noqa: D102
        self.trackers[RECON].update_state(y_pred[RECON])
        self.trackers[KL].update_state(y_pred[KL])
        self.trackers["elbo"].update_state(-(y_pred[RECON] + y_pred[KL]))
        self.trackers[BETA].update_state(y_pred[BETA])
        return self.get_metrics_result()

    def reconstruct(self, x: Any) -> Any:
        """Bernoulli means of the reconstruction from the posterior mean (for pictures)."""
        mean, _ = self.encode(x)
        return ops.sigmoid(ops.cast(self.decoder(mean), "float32"))

    def sample(self, n: int, seed: int = 0) -> Any:
        z = keras.random.normal((n, self.latent_dim), seed=seed)
        return ops.sigmoid(ops.cast(self.decoder(z), "float32"))
