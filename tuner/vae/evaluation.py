"""Evaluate a trained VAE: ELBO, importance-weighted NLL (IWAE bound), active units, diagnosis."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from tuner.vae.model import VAE, bernoulli_nll

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): Cov_x(E_q[z_u]) > 0.01
LOG_2PI = math.log(2 * math.pi)


class _ChunkLogWeights(keras.Model):
    """For each image, log Σ_{i≤k} w_i over one chunk of k posterior samples, where
    log w = log p(x|z) + log p(z) − log q(z|x). Run through ``predict`` so that Keras compiles
    it on whichever backend is active."""

    def __init__(self, vae: VAE, k: int, seed: int) -> None:
        super().__init__(name="chunk_log_weights")
        self.vae = vae
        self.k = k
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: Any) -> Any:
        mean, log_var = self.vae.encode(x)
        batch, dim = ops.shape(mean)[0], self.vae.latent_dim
        eps = keras.random.normal((batch, self.k, dim), seed=self.seed_generator)
        z = mean[:, None, :] + ops.exp(0.5 * log_var)[:, None, :] * eps
        logits = ops.cast(self.vae.decoder(ops.reshape(z, (-1, dim))), "float32")
        x_rep = ops.repeat(ops.cast(x, "float32"), self.k, axis=0)
        log_px = -ops.reshape(bernoulli_nll(x_rep, logits), (batch, self.k))
        log_pz = -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)
        log_qz = -0.5 * ops.sum(ops.square(eps) + LOG_2PI + log_var[:, None, :], axis=-1)
        return ops.logsumexp(log_px + log_pz - log_qz, axis=-1)


# Called with (importance samples drawn so far, k) after every chunk of samples.
ProgressCallback = Callable[[int, int], None]


def iwae_nll(
    model: VAE,
    images: np.ndarray,
    k: int = 5000,
    chunk: int = 500,
    max_rows: int = 65536,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """−log p(x) estimated with k importance samples per image (Burda et al. 2015), per image.

    Memory stays bounded: samples are drawn ``chunk`` at a time and images are batched so that
    one batch decodes at most ``max_rows`` latent vectors; chunks are combined by log-sum-exp.
    """
    if k < 1:
        raise ValueError(f"Argument `k` must be >= 1. Received: k={k}")
    chunk = min(chunk, k)
    batch = max(1, max_rows // chunk)
    total = np.full(len(images), -np.inf)
    # One estimator per chunk size (at most two): each is compiled once, and its seed
    # generator advances between calls, so every chunk draws fresh samples.
    estimators: dict[int, _ChunkLogWeights] = {}
    done = 0
    while done < k:
        size = min(chunk, k - done)
        if size not in estimators:
            estimators[size] = _ChunkLogWeights(model, size, seed + size)
        part = estimators[size].predict(images, batch_size=batch, verbose=0)
        total = np.logaddexp(total, part.astype(np.float64))
        done += size
        if on_progress is not None:
            on_progress(done, k)
    return -(total - math.log(k))


@dataclass
class Evaluation:
    split: str
    n_images: int
    elbo: float
    recon: float
    kl: float
    nll_iwae: float | None
    k: int
    active_units: int
    latent_dim: int
    kl_per_dim: list[float] = field(default_factory=list)
    diagnosis: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def posterior_stats(model: VAE, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Active-unit activity Cov_x(E_q[z_u]) and mean KL per latent dimension (nats)."""
    stats = model.encoder.predict(images, batch_size=batch_size, verbose=0).astype(np.float64)
    mean, log_var = np.split(stats, 2, axis=-1)
    activity = mean.var(axis=0)
    kl_per_dim = (0.5 * (np.exp(log_var) + mean**2 - 1.0 - log_var)).mean(axis=0)
    return activity, kl_per_dim


def diagnose(recon: float, kl: float, active_units: int, latent_dim: int) -> list[str]:
    """Plain-language reading of the usual failures. Thresholds are rules of thumb for
    images of a few hundred pixels; each message says what to change."""
    notes = []
    if active_units <= max(1, latent_dim // 10) or kl < 1.0:
        notes.append(
            f"Posterior collapse: only {active_units} of {latent_dim} latent units are active and the KL is "
            f"{kl:.1f} nats; the decoder ignores z. Lower max_beta or anneal it for longer, or add free bits."
        )
    elif kl < 0.05 * recon and active_units < latent_dim // 2:
        notes.append(
            f"Over-regularised: the KL ({kl:.1f} nats) is small next to the distortion ({recon:.1f} nats) and "
            f"{latent_dim - active_units} units are unused; reconstructions will be blurry. Lower max_beta."
        )
    if kl > recon:
        notes.append(
            f"Under-regularised: the rate ({kl:.1f} nats) exceeds the distortion ({recon:.1f} nats); the code "
            "stores detail the prior cannot model. Raise max_beta or shrink the latent size."
        )
    if not notes:
        notes.append(
            f"Healthy: {active_units} of {latent_dim} units active, rate {kl:.1f} nats, distortion {recon:.1f} nats."
        )
    return notes


def evaluate(
    model: VAE,
    images: np.ndarray,
    split: str = "test",
    k: int = 5000,
    batch_size: int = 500,
    on_progress: ProgressCallback | None = None,
) -> Evaluation:
    """ELBO, IWAE NLL with ``k`` samples (0: skip), active units and a diagnosis of ``images``;
    ``on_progress`` follows the IWAE estimate, which takes most of the time."""
    metrics = model.evaluate(images, batch_size=batch_size, verbose=0, return_dict=True)
    activity, kl_per_dim = posterior_stats(model, images)
    active = int((activity > ACTIVE_UNIT_THRESHOLD).sum())
    nll = float(iwae_nll(model, images, k=k, on_progress=on_progress).mean()) if k > 0 else None
    recon, kl = float(metrics["recon"]), float(metrics["kl"])
    return Evaluation(
        split=split,
        n_images=len(images),
        elbo=float(metrics["elbo"]),
        recon=recon,
        kl=kl,
        nll_iwae=nll,
        k=k,
        active_units=active,
        latent_dim=model.latent_dim,
        kl_per_dim=[float(v) for v in kl_per_dim],
        diagnosis=diagnose(recon, kl, active, model.latent_dim),
    )
