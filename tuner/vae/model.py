"""The convolutional VAE, written once with ``keras.ops`` for the TensorFlow and JAX backends.

β is applied inside the training step: a non-trainable step counter is read and advanced in
:meth:`VAE.call` (which runs under JAX's stateless ``stateless_call`` too), the schedule turns
it into β, and :meth:`VAE.compute_loss` weights the KL with it. Evaluation (``training=False``)
always uses β = 1, so validation ELBOs are comparable across trials.

The schedule's numbers and ``free_bits`` live in a non-trainable variable rather than in the
traced code: trials that differ only in them compile to the same program, which JAX's
persistent cache then serves without compiling (a new program costs seconds on a GPU, often
more than the training itself).

A β controller (:class:`~tuner.vae.schedules.BetaController`: GECO, ControlVAE) keeps its state
(β, then its memory) in another non-trainable variable, ``beta_state``, updated in
:meth:`VAE.call` from the batch's KL and reconstruction like the step counter: inside the
compiled step on TensorFlow and JAX, and inside fused steps (``scan_steps.py``) too.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from tuner.vae.likelihoods import Likelihood, get_likelihood
from tuner.vae.likelihoods import bernoulli_nll as bernoulli_nll  # re-exported: older imports
from tuner.vae.pixel_head import build_pixel_head, decode_greedy
from tuner.vae.scan_steps import ScanTrainSteps
from tuner.vae.schedules import BetaController, BetaSchedule, Constant

# y_pred keys; every value is per example so predict() can concatenate batches.
RECON, KL, KL_PER_DIM, BETA = "recon", "kl", "kl_per_dim", "beta"
LOSS_RECON = "loss_recon"  # the iwae objective's term in place of RECON (training only)


def gaussian_kl(mean: Any, log_var: Any) -> Any:
    """KL(N(mean, exp(log_var)) || N(0, 1)) per latent dimension, in nats."""
    return 0.5 * (ops.exp(log_var) + ops.square(mean) - 1.0 - log_var)


def _conv(h: Any, width: int, block: str, strides: int = 1, transpose: bool = False) -> Any:
    """One conv block of ``block`` kind; ``strides`` 2 halves (``transpose``: doubles) the size."""
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    if block == "gated":  # Dauphin et al. 2017, as in the VampPrior code's GatedConv2d
        value = conv(width, 3, strides=strides, padding="same")(h)
        gate = conv(width, 3, strides=strides, padding="same", activation="sigmoid")(h)
        return layers.Multiply()([value, gate])
    if block == "residual" and strides == 1 and h.shape[-1] == width:
        y = conv(width, 3, padding="same", activation="relu")(h)
        y = conv(width, 3, padding="same")(y)
        return layers.Activation("relu")(layers.Add()([h, y]))
    return conv(width, 3, strides=strides, padding="same", activation="relu")(h)


def _stage(h: Any, width: int, block: str, depth: int, transpose: bool = False) -> Any:
    h = _conv(h, width, block, strides=2, transpose=transpose)
    for _ in range(depth - 1):
        h = _conv(h, width, block, transpose=transpose)
    return h


def build_encoder(
    image_shape: tuple[int, int, int],
    filters: list[int],
    latent_dim: int,
    block: str = "plain",
    depth: int = 1,
    hidden: int = 0,
) -> keras.Model:
    inputs = keras.Input(image_shape)
    h = inputs
    for width in filters:
        h = _stage(h, width, block, depth)
    h = layers.Flatten()(h)
    if hidden:
        h = layers.Dense(hidden, activation="relu")(h)
    # One dense layer gives mean and log-variance together: one matmul instead of two.
    stats = layers.Dense(2 * latent_dim)(h)
    return keras.Model(inputs, stats, name="encoder")


def build_decoder(
    image_shape: tuple[int, int, int],
    filters: list[int],
    latent_dim: int,
    params_per_channel: int = 1,
    block: str = "plain",
    depth: int = 1,
    hidden: int = 0,
) -> keras.Model:
    """Outputs ``params_per_channel`` maps per image channel: the likelihood's parameters."""
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    h0, w0 = math.ceil(height / scale), math.ceil(width / scale)
    inputs = keras.Input((latent_dim,))
    h = inputs
    if hidden:
        h = layers.Dense(hidden, activation="relu")(h)
    h = layers.Dense(h0 * w0 * filters[-1], activation="relu")(h)
    h = layers.Reshape((h0, w0, filters[-1]))(h)
    for width_ in reversed(filters):
        h = _stage(h, width_, block, depth, transpose=True)
    logits = layers.Conv2DTranspose(channels * params_per_channel, 3, padding="same")(h)
    extra_h, extra_w = h0 * scale - height, w0 * scale - width
    if extra_h or extra_w:  # inputs whose size is not a multiple of 2**len(filters)
        logits = layers.Cropping2D(((0, extra_h), (0, extra_w)))(logits)
    return keras.Model(inputs, logits, name="decoder")


class VAE(ScanTrainSteps, keras.Model):
    """Gaussian posterior, standard normal prior, and a pixel likelihood on [0, 1] pixels
    (``likelihood``: a name from :mod:`tuner.vae.likelihoods`, Bernoulli by default).

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
        likelihood: str = "bernoulli",
        objective: str = "elbo",
        iwae_k: int = 1,
        log_var_clip: tuple[float, float] | None = None,
        block: str = "plain",
        depth: int = 1,
        hidden: int = 0,
        networks: tuple[keras.Model, keras.Model] | None = None,
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
        if objective not in ("elbo", "iwae"):
            raise ValueError(f"Argument `objective` must be 'elbo' or 'iwae'. Received: objective={objective!r}")
        if iwae_k < 1:
            raise ValueError(f"Argument `iwae_k` must be >= 1. Received: iwae_k={iwae_k}")
        self.objective, self.iwae_k = objective, int(iwae_k)
        self.log_var_clip = (float(log_var_clip[0]), float(log_var_clip[1])) if log_var_clip else None
        self.likelihood: Likelihood = get_likelihood(likelihood)
        if block not in ("plain", "residual", "gated"):
            raise ValueError(f"Argument `block` must be plain, residual or gated. Received: block={block!r}")
        if networks is not None:  # a user's own (see vae/builders.py), already checked
            self.encoder, self.decoder = networks
        else:
            self.encoder = build_encoder(self.image_shape, self.filters, latent_dim, block, int(depth), int(hidden))
            self.decoder = build_decoder(
                self.image_shape,
                self.filters,
                latent_dim,
                self.likelihood.params_per_channel,
                block,
                int(depth),
                int(hidden),
            )
        # An autoregressive likelihood's head (pixel_head.py): decoder parameters + image → parameters.
        self.pixel_head = (
            build_pixel_head(self.image_shape, self.image_shape[-1] * self.likelihood.params_per_channel)
            if self.likelihood.autoregressive
            else None
        )
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
        self.controller = self.schedule if isinstance(self.schedule, BetaController) else None
        if self.controller is not None:
            # Saved with the weights: a restored model holds the β its training ended with.
            self.beta_state = self.add_weight(
                shape=(self.controller.state_size,),
                dtype="float32",
                initializer="zeros",
                trainable=False,
                name="beta_state",
                autocast=False,
            )
            self.beta_state.assign(ops.convert_to_tensor(self.controller.initial_state(), dtype="float32"))
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (RECON, KL, "elbo", BETA)}

    def encode(self, x: Any) -> tuple[Any, Any]:
        stats = ops.cast(self.encoder(x), "float32")
        mean, log_var = ops.split(stats, 2, axis=-1)
        if self.log_var_clip is not None:
            # VampPrior's [−6, 2]: keeps exp(log_var) from overflowing early in training.
            log_var = ops.clip(log_var, self.log_var_clip[0], self.log_var_clip[1])
        return mean, log_var

    def call(self, x: Any, training: bool = False) -> dict[str, Any]:
        if training and self.dynamic_binarization:
            noise = keras.random.uniform(ops.shape(x), seed=self.seed_generator)
            x = ops.cast(noise < x, x.dtype)
        x = ops.cast(x, "float32")
        mean, log_var = self.encode(x)
        kl_per_dim = gaussian_kl(mean, log_var)
        numbers = {key: self.loss_params[i + 1] for i, key in enumerate(self._schedule_keys)}
        beta: Any = 1.0
        if training:
            if self.controller is None:
                beta = self.schedule(ops.cast(self.beta_step, "float32"), numbers)
            self.beta_step.assign_add(1)
        k = self.iwae_k if training and self.objective == "iwae" else 1
        batch, dim = ops.shape(mean)[0], self.latent_dim
        # (batch, k·dim) drawn as one block: with k = 1 exactly the ELBO's draws.
        eps = ops.reshape(keras.random.normal((batch, k * dim), seed=self.seed_generator), (batch, k, dim))
        z = mean[:, None, :] + ops.exp(0.5 * log_var)[:, None, :] * eps
        x_rep = ops.repeat(x, k, axis=0) if k > 1 else x
        params = self.decode_params(ops.reshape(z, (-1, dim)), x_rep)
        recon_k = ops.reshape(self.likelihood.nll(x_rep, params), (batch, k))
        if training and self.controller is not None:
            beta = self._control(self.controller, kl_per_dim, recon_k[:, 0], numbers)
        out = {
            RECON: recon_k[:, 0],  # a one-sample ELBO estimate, whatever the objective
            KL: ops.sum(kl_per_dim, axis=-1),
            KL_PER_DIM: kl_per_dim,
            BETA: ops.zeros_like(recon_k[:, 0]) + beta,
        }
        if k > 1:
            out[LOSS_RECON] = self._iwae_recon(recon_k, z, eps, log_var, beta)
        return out

    def _control(self, controller: BetaController, kl_per_dim: Any, recon: Any, numbers: dict[str, Any]) -> Any:
        """The controller's step: measure this batch (no gradient flows into the law), update
        ``beta_state`` and return the β that weights this step's KL."""
        kl = ops.stop_gradient(ops.mean(ops.sum(kl_per_dim, axis=-1)))
        recon = ops.stop_gradient(ops.mean(recon))
        state = controller.update(ops.convert_to_tensor(self.beta_state), kl, recon, numbers, ops)
        self.beta_state.assign(state)
        return state[0]

    @staticmethod
    def _iwae_recon(recon_k: Any, z: Any, eps: Any, log_var: Any, beta: Any) -> Any:
        """The part of the β-IWAE loss that compute_loss adds to β·KL (see the module docstring).

        The bound is L = log (1/k) Σ_i exp(log p(x|z_i) − β·d_i), with d_i = log q(z_i|x) −
        log p(z_i) the sampled KL. Writing d_i = KL + (d_i − mean_j d_j) + (mean_j d_j − KL),
        the last term has mean zero (and so has its gradient, by reparameterization) and is
        dropped: −L ≈ −log (1/k) Σ exp(log p(x|z_i) − β(d_i − mean d)) + β·KL. With k = 1 the
        first term is −log p(x|z_1): exactly the ELBO's loss.
        """
        d = 0.5 * ops.sum(ops.square(z) - ops.square(eps) - log_var[:, None, :], axis=-1)
        centred = d - ops.mean(d, axis=-1, keepdims=True)
        log_w = -recon_k - beta * centred
        k = ops.cast(ops.shape(recon_k)[1], "float32")
        return -(ops.logsumexp(log_w, axis=-1) - ops.log(k))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):  # noqa: D102
        kl_term = ops.sum(ops.maximum(ops.mean(y_pred[KL_PER_DIM], axis=0), self.loss_params[0]))
        recon = y_pred[LOSS_RECON] if LOSS_RECON in y_pred else y_pred[RECON]
        return ops.mean(recon) + ops.mean(y_pred[BETA]) * kl_term

    def compute_metrics(self, x, y, y_pred, sample_weight=None):  # noqa: D102
        self.trackers[RECON].update_state(y_pred[RECON])
        self.trackers[KL].update_state(y_pred[KL])
        self.trackers["elbo"].update_state(-(y_pred[RECON] + y_pred[KL]))
        self.trackers[BETA].update_state(y_pred[BETA])
        return self.get_metrics_result()

    def decode_params(self, z: Any, x: Any) -> Any:
        """The likelihood's parameters for images ``x`` given latents ``z`` (float32): the
        decoder's, corrected by the pixel head from ``x``'s earlier pixels where there is one."""
        params = ops.cast(self.decoder(z), "float32")
        if self.pixel_head is not None:
            params = ops.cast(self.pixel_head([params, ops.cast(x, "float32")]), "float32")
        return params

    def decode(self, z: Any) -> Any:
        """The images that latents ``z`` decode to (the likelihood's mean; for pictures). With a
        pixel head, decoded pixel by pixel in raster order (:func:`~tuner.vae.pixel_head.decode_greedy`)."""
        params = ops.cast(self.decoder(z), "float32")
        if self.pixel_head is None:
            return self.likelihood.mean(params)
        mean = lambda p: self.likelihood.mean(p, np)  # noqa: E731
        return decode_greedy(self.pixel_head, ops.convert_to_numpy(params), mean, self.image_shape[-1])

    def reconstruct(self, x: Any) -> Any:
        """The likelihood's mean of the reconstruction from the posterior mean (for pictures)."""
        mean, _ = self.encode(x)
        return self.decode(mean)

    def sample(self, n: int, seed: int = 0) -> Any:
        return self.decode(keras.random.normal((n, self.latent_dim), seed=seed))
