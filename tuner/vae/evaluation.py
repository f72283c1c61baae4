"""Evaluate a trained VAE: ELBO, importance-weighted NLL (IWAE bound), active units, diagnosis."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from tuner._system import usable_cores
from tuner.vae.likelihoods import bits_per_dim
from tuner.vae.model import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): Cov_x(E_q[z_u]) > 0.01
LOG_2PI = math.log(2 * math.pi)


class _ChunkLogWeights(keras.Model):
    """For each image, log Σ_{i≤k} w_i over one chunk of k posterior samples, where
    log w = log p(x|z) + log p(z) − log q(z|x), with the standard normal draws ``eps`` given
    (so that the estimate does not depend on how images are batched)."""

    def __init__(self, vae: VAE) -> None:
        super().__init__(name="chunk_log_weights")
        self.vae = vae

    def call(self, inputs: Any) -> Any:
        x, eps = inputs
        mean, log_var = self.vae.encode(x)
        batch, k, dim = ops.shape(eps)[0], ops.shape(eps)[1], self.vae.latent_dim
        z = mean[:, None, :] + ops.exp(0.5 * log_var)[:, None, :] * eps
        params = ops.cast(self.vae.decoder(ops.reshape(z, (-1, dim))), "float32")
        x_rep = ops.repeat(ops.cast(x, "float32"), k, axis=0)
        log_px = -ops.reshape(self.vae.likelihood.nll(x_rep, params), (batch, k))
        log_pz = -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)
        log_qz = -0.5 * ops.sum(ops.square(eps) + LOG_2PI + log_var[:, None, :], axis=-1)
        return ops.logsumexp(log_px + log_pz - log_qz, axis=-1)


# Called with (importance samples drawn so far, k) after every chunk of samples.
ProgressCallback = Callable[[int, int], None]

DEFAULT_MAX_MEMORY_GB = 1.0


def bytes_per_decoded_row(model: VAE) -> int:
    """A generous estimate of the memory one latent vector costs through the decoder and the
    likelihood: every decoder activation twice (a layer's input and output live together), the
    repeated image, and about a dozen likelihood temporaries per output value, in float32."""
    activations = sum(math.prod(int(d) for d in layer.output.shape[1:]) for layer in model.decoder.layers)
    out_size = math.prod(int(d) for d in model.decoder.output.shape[1:])
    return 4 * (2 * activations + math.prod(model.image_shape) + 12 * out_size)


def rows_for_memory(model: VAE, max_memory_gb: float) -> int:
    """How many latent vectors one decoder call may hold within ``max_memory_gb`` (≥ 1)."""
    return max(1, int(max_memory_gb * 2**30) // bytes_per_decoded_row(model))


def _normal_draws(
    seed: int, chunk_index: int, first: int, count: int, size: int, dim: int, pool: ThreadPoolExecutor | None = None
) -> np.ndarray:
    """The standard normal draws of images ``first`` … ``first + count − 1`` for one chunk, shape
    (count, size, dim). One generator per (chunk, image), so that an image's draws never depend
    on its batch; ``pool`` fills the images in parallel (NumPy releases the GIL while it fills)."""
    out = np.empty((count, size, dim), dtype=np.float32)

    def fill(j: int) -> None:
        np.random.default_rng([seed, chunk_index, first + j]).standard_normal((size, dim), dtype=np.float32, out=out[j])

    if pool is None:
        for j in range(count):
            fill(j)
    else:
        list(pool.map(fill, range(count)))
    return out


def _draw_threads() -> int:
    # The draws are most of the host's work: at k = 5000 on 10,000 MNIST images with 64
    # latent units they are 3.2e9 floats, ~37 s on one core of this project's CPU, while a
    # GPU computes the weights in seconds. Leave a core for the framework's own threads.
    return max(1, min(16, usable_cores() - 1))  # the cores this process may use (Slurm, taskset), not the machine's


def iwae_nll(
    model: VAE,
    images: np.ndarray,
    k: int = 5000,
    chunk: int = 500,
    max_memory: float | None = DEFAULT_MAX_MEMORY_GB,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
    max_rows: int | None = None,
) -> np.ndarray:
    """−log p(x) estimated with k importance samples per image (Burda et al. 2015), in nats
    per image, under the model's likelihood.

    Samples are drawn ``chunk`` at a time and chunks are combined by log-sum-exp; images are
    batched so that one decoder call holds what ``max_memory`` GB allows
    (:func:`rows_for_memory`; None: no bound), or at most ``max_rows`` latent vectors when
    given. The draws depend only on ``seed``, the chunk and the image's index, so the result is
    the same whatever the memory bound (up to float32 summation order).
    """
    if k < 1:
        raise ValueError(f"Argument `k` must be >= 1. Received: k={k}")
    if max_memory is not None and max_memory <= 0:
        raise ValueError(f"Argument `max_memory` must be > 0 (GB). Received: max_memory={max_memory}")
    chunk = min(chunk, k)
    if max_rows is None:
        max_rows = rows_for_memory(model, max_memory) if max_memory is not None else len(images) * chunk
    batch = max(1, min(len(images), max_rows // chunk))
    estimator = _ChunkLogWeights(model)
    dim = model.latent_dim
    sizes = [min(chunk, k - done) for done in range(0, k, chunk)]
    jobs = [(c, first) for c in range(len(sizes)) for first in range(0, len(images), batch)]
    total = np.full(len(images), -np.inf)
    part = np.empty(len(images))
    with ThreadPoolExecutor(_draw_threads()) as pool, ThreadPoolExecutor(1) as ahead:

        def draws(job: int) -> np.ndarray:
            c, first = jobs[job]
            return _normal_draws(seed, c, first, min(batch, len(images) - first), sizes[c], dim, pool)

        # The next batch's draws are made while the model scores this one.
        pending = ahead.submit(draws, 0) if jobs else None
        for job, (c, first) in enumerate(jobs):
            assert pending is not None  # there is a job, so its draws were submitted
            eps = pending.result()
            if job + 1 < len(jobs):
                pending = ahead.submit(draws, job + 1)
            x, n = images[first : first + batch], len(eps)
            if n < batch:  # the last batch, padded: a chunk's calls all run one compiled program
                x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)])
                eps = np.concatenate([eps, np.repeat(eps[-1:], batch - n, axis=0)])
            part[first : first + n] = ops.convert_to_numpy(estimator.predict_on_batch((x, eps)))[:n]
            if first + n == len(images):  # the chunk is complete
                total = np.logaddexp(total, part)
                if on_progress is not None:
                    on_progress(sum(sizes[: c + 1]), k)
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
    likelihood: str = "bernoulli"  # p(x|z) that every NLL, ELBO and recon figure is under
    bits_per_dim: float | None = None  # the NLL (else −ELBO) in bits per dimension, 8-bit likelihoods only

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
    images of a few hundred pixels; each message says what to change.

    Collapse needs both few active units *and* little KL: a large latent space with only a
    tenth of its units active but 25 nats of KL is a model that pruned the units it did not
    need (common and healthy), not one whose decoder ignores z.
    """
    notes = []
    few_units = active_units <= max(1, latent_dim // 10)
    if kl < 1.0 or (few_units and kl < 5.0):
        notes.append(
            f"Posterior collapse: only {active_units} of {latent_dim} latent units are active and the KL is "
            f"{kl:.1f} nats; the decoder ignores z. Lower max_beta or anneal it for longer, or add free bits."
        )
    elif kl < 0.05 * recon and active_units < latent_dim // 2:
        notes.append(
            f"Over-regularised: the KL ({kl:.1f} nats) is small next to the distortion ({recon:.1f} nats) and "
            f"{latent_dim - active_units} units are unused; reconstructions will be blurry. Lower max_beta."
        )
    elif few_units:
        notes.append(
            f"Unused capacity: {active_units} of {latent_dim} units carry the {kl:.1f} nats of KL; the rest "
            "are switched off. Not a collapse; a smaller latent_dim would train the same model faster."
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
    max_memory: float | None = DEFAULT_MAX_MEMORY_GB,
) -> Evaluation:
    """ELBO, IWAE NLL with ``k`` samples (0: skip), active units and a diagnosis of ``images``,
    all under the model's likelihood; ``on_progress`` follows the IWAE estimate, which takes
    most of the time; ``max_memory`` (GB) bounds its working set (see :func:`iwae_nll`)."""
    metrics = model.evaluate(images, batch_size=batch_size, verbose=0, return_dict=True)
    activity, kl_per_dim = posterior_stats(model, images)
    active = int((activity > ACTIVE_UNIT_THRESHOLD).sum())
    nll = float(iwae_nll(model, images, k=k, max_memory=max_memory, on_progress=on_progress).mean()) if k > 0 else None
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
        likelihood=model.likelihood.name,
        bits_per_dim=(
            bits_per_dim(nll if nll is not None else -float(metrics["elbo"]), math.prod(model.image_shape))
            if model.likelihood.discrete_8bit
            else None
        ),
    )
