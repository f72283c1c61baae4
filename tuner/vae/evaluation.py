"""Evaluate a trained VAE: ELBO, importance-weighted NLL (IWAE bound), active units, diagnosis.

The ELBO is averaged over many posterior draws (the IWAE estimate's own, or :data:`ELBO_DRAWS`
of its own when k is smaller) and reported with its Monte Carlo standard error: a single draw
on 100 MNIST images has an SD of about 0.8 nats, more than the gaps it is used to compare.
"""

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
from tuner.vae.data import ImageRows, as_unit_float
from tuner.vae.diagnosis import ACTIVE_UNIT_THRESHOLD, reading
from tuner.vae.likelihoods import bits_per_dim
from tuner.vae.model import VAE, gaussian_kl

LOG_2PI = math.log(2 * math.pi)
# The fewest posterior draws the ELBO is averaged over (when the IWAE estimate draws fewer).
ELBO_DRAWS = 8


class _ChunkLogWeights(keras.Model):
    """For each image, log Σ_{i≤k} w_i over one chunk of k posterior samples, where
    log w = log p(x|z) + log p(z) − log q(z|x), with the standard normal draws ``eps`` given
    (so that the estimate does not depend on how images are batched); also each sample's
    log p(x|z), shape (batch, k), and the image's analytic KL, for the ELBO."""

    def __init__(self, vae: VAE) -> None:
        super().__init__(name="chunk_log_weights")
        self.vae = vae

    def call(self, inputs: Any) -> Any:
        x, eps = inputs
        mean, log_var = self.vae.encode(x)
        batch, k, dim = ops.shape(eps)[0], ops.shape(eps)[1], self.vae.latent_dim
        z = mean[:, None, :] + ops.exp(0.5 * log_var)[:, None, :] * eps
        x_rep = ops.repeat(ops.cast(x, "float32"), k, axis=0)
        params = self.vae.decode_params(ops.reshape(z, (-1, dim)), x_rep)
        log_px = -ops.reshape(self.vae.likelihood.nll(x_rep, params), (batch, k))
        log_pz = -0.5 * ops.sum(ops.square(z) + LOG_2PI, axis=-1)
        log_qz = -0.5 * ops.sum(ops.square(eps) + LOG_2PI + log_var[:, None, :], axis=-1)
        kl = ops.sum(gaussian_kl(mean, log_var), axis=-1)  # as the model's ELBO: the clipped posterior
        return ops.logsumexp(log_px + log_pz - log_qz, axis=-1), log_px, kl


# Called after every batch of images with (image-samples scored so far, images × k): one unit
# is one posterior draw of one image, so the ETA is right from the first batch on.
ProgressCallback = Callable[[int, int], None]

# The IWAE bound's k where the user gives none: the papers' 5000 on a GPU or TPU (10,000 MNIST
# test images in ~40 s on an H200), 500 on a CPU, where 5000 takes ~30 minutes for a small model
# (benchmarks/evaluate_speed.py); the printed estimate says what the larger k would cost.
PAPER_K = 5000
CPU_K = 500


def default_k() -> int:
    """:data:`PAPER_K` on an accelerator, :data:`CPU_K` on a CPU."""
    from tuner.vae.backend import on_accelerator

    return PAPER_K if on_accelerator() else CPU_K


DEFAULT_MAX_MEMORY_GB = 1.0


def bytes_per_decoded_row(model: VAE) -> int:
    """A generous estimate of the memory one latent vector costs through the decoder and the
    likelihood: every decoder activation twice (a layer's input and output live together), the
    repeated image, and about a dozen likelihood temporaries per output value, in float32."""
    networks = [model.decoder] + ([model.pixel_head] if model.pixel_head is not None else [])
    activations = sum(
        math.prod(int(d) for d in layer.output.shape[1:]) for network in networks for layer in network.layers
    )
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


@dataclass
class _Pass:
    """What one importance-sampling pass over the images found (see :func:`_importance_pass`)."""

    nll: np.ndarray  # −log p(x) per image, from the k importance samples
    draw_log_px: np.ndarray  # for each of the k draws, the images' mean log p(x|z): shape (k,)
    kl: np.ndarray  # the analytic KL(q(z|x) || p(z)) per image


def _importance_pass(
    model: VAE,
    images: np.ndarray,
    k: int,
    chunk: int,
    max_memory: float | None,
    seed: int,
    on_progress: ProgressCallback | None,
    max_rows: int | None,
) -> _Pass:
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
    offsets = [sum(sizes[:c]) for c in range(len(sizes))]
    jobs = [(c, first) for c in range(len(sizes)) for first in range(0, len(images), batch)]
    total = np.full(len(images), -np.inf)
    part = np.empty(len(images))
    draw_sums = np.zeros(k)  # Σ over images of log p(x|z), per draw
    kl = np.empty(len(images))
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
            log_w, log_px, kl_batch = (ops.convert_to_numpy(v) for v in estimator.predict_on_batch((x, eps)))
            part[first : first + n] = log_w[:n]
            draw_sums[offsets[c] : offsets[c] + sizes[c]] += log_px[:n].astype(np.float64).sum(axis=0)
            if c == 0:
                kl[first : first + n] = kl_batch[:n]
            if first + n == len(images):  # the chunk is complete
                total = np.logaddexp(total, part)
            if on_progress is not None:
                on_progress(offsets[c] * len(images) + (first + n) * sizes[c], k * len(images))
    return _Pass(nll=-(total - math.log(k)), draw_log_px=draw_sums / len(images), kl=kl)


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
    return _importance_pass(model, images, k, chunk, max_memory, seed, on_progress, max_rows).nll


@dataclass
class ElboEstimate:
    """The ELBO averaged over ``draws`` posterior draws per image, nats per image."""

    elbo: float
    se: float | None  # its Monte Carlo standard error (None from a single draw)
    recon: float  # −E[log p(x|z)], averaged over the same draws
    kl: float  # analytic, so without sampling error
    draws: int


def elbo_from_draws(draw_log_px: np.ndarray, kl: np.ndarray) -> ElboEstimate:
    """The ELBO from each draw's mean log p(x|z) over the images (``draw_log_px``, one per
    draw: independent estimates) and the images' analytic KL."""
    draws = len(draw_log_px)
    mean_kl = float(np.mean(kl))
    recon = -float(np.mean(draw_log_px))
    se = float(np.std(draw_log_px, ddof=1) / math.sqrt(draws)) if draws > 1 else None
    return ElboEstimate(elbo=-(recon + mean_kl), se=se, recon=recon, kl=mean_kl, draws=draws)


def estimate_elbo(
    model: VAE,
    images: np.ndarray,
    draws: int = ELBO_DRAWS,
    max_memory: float | None = DEFAULT_MAX_MEMORY_GB,
    seed: int = 0,
) -> ElboEstimate:
    """The ELBO of ``images`` averaged over ``draws`` posterior draws per image, with its
    standard error (the draws are those of :func:`iwae_nll` with the same ``seed``)."""
    found = _importance_pass(model, images, draws, draws, max_memory, seed, None, None)
    return elbo_from_draws(found.draw_log_px, found.kl)


@dataclass
class Evaluation:
    split: str
    n_images: int
    elbo: float  # averaged over elbo_draws posterior draws per image
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
    elbo_se: float | None = None  # the ELBO's Monte Carlo standard error over its draws
    elbo_draws: int = 1
    # What bits_per_dim is to be read against (8-bit likelihoods): a uniform model (8.0) and
    # the same images stored losslessly as PNG; a model above PNG has not learned the images.
    uniform_bits_per_dim: float | None = None
    png_bits_per_dim: float | None = None
    # Reconstructions (the likelihood's mean from the posterior mean) against the inputs, mean
    # over up to QUALITY_IMAGES images: PSNR (dB), SSIM, and the sharpness ratio (the
    # reconstructions' high-frequency energy over the inputs'; 1 = as sharp, < 0.5 = blurry).
    psnr_db: float | None = None
    ssim: float | None = None
    sharpness: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def posterior_stats(model: VAE, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Active-unit activity Cov_x(E_q[z_u]) and mean KL per latent dimension (nats), of the
    posterior the model uses: its log-variance clipped as :meth:`VAE.encode` clips it, so that
    the dimensions' KL sums to the model's KL."""
    stats = model.encoder.predict(images, batch_size=batch_size, verbose=0).astype(np.float32)
    mean, log_var = np.split(stats, 2, axis=-1)
    if model.log_var_clip is not None:  # in float32, as the model does
        log_var = np.clip(log_var, np.float32(model.log_var_clip[0]), np.float32(model.log_var_clip[1]))
    mean, log_var = mean.astype(np.float64), log_var.astype(np.float64)
    activity = mean.var(axis=0)
    kl_per_dim = (0.5 * (np.exp(log_var) + mean**2 - 1.0 - log_var)).mean(axis=0)
    return activity, kl_per_dim


QUALITY_IMAGES = 256  # images whose reconstructions are scored (PSNR, SSIM, sharpness)
PNG_IMAGES = 500  # images whose PNG size gives the data's lossless bits per dimension


def reconstruction_quality(model: VAE, images: np.ndarray) -> tuple[float, float | None, float]:
    """Mean PSNR (dB), SSIM (None for images under 7×7 px) and median sharpness ratio of the
    model's reconstructions of ``images`` (float32 in [0, 1])."""
    from tuner.vae import image_metrics

    recon = np.concatenate(
        [ops.convert_to_numpy(model.reconstruct(images[i : i + 128])) for i in range(0, len(images), 128)]
    )
    recon = np.clip(recon, 0.0, 1.0)
    psnr = image_metrics.psnr(images, recon)
    ssim = float(np.mean(image_metrics.ssim(images, recon))) if min(images.shape[1:3]) >= 7 else None
    finite_psnr = psnr[np.isfinite(psnr)]
    mean_psnr = float(np.mean(finite_psnr)) if len(finite_psnr) else float("inf")
    return mean_psnr, ssim, float(np.median(image_metrics.sharpness_ratio(images, recon)))


VIEW_IMAGES = 8  # originals, reconstructions and samples a trial keeps for its report


def _to_uint8(images: Any) -> np.ndarray:
    return np.round(np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def trial_views(model: VAE, images: np.ndarray | ImageRows, n: int = VIEW_IMAGES, n_eval: int = 1000) -> dict:
    """What a report shows of one trained model, computed while the model is at hand, so that
    reports need neither a backend nor the data: the first ``n`` images, their reconstructions
    and ``n`` samples from the prior (uint8 pixels); activity and KL per latent dimension on up
    to ``n_eval`` images; the reconstructions' mean PSNR (dB), SSIM (NaN under 7 px) and median
    sharpness ratio on up to :data:`QUALITY_IMAGES`; for 8-bit likelihoods the PNG bits per
    dimension of up to :data:`PNG_IMAGES` of the images (else NaN). NumPy arrays, for ``np.savez``."""
    images = as_unit_float(images[:n_eval])
    activity, kl_per_dim = posterior_stats(model, images)
    psnr, ssim, sharpness = reconstruction_quality(model, images[:QUALITY_IMAGES])
    png = math.nan
    if model.likelihood.discrete_8bit:
        from tuner.vae import image_metrics

        png = image_metrics.png_bits_per_dim(_to_uint8(images[:PNG_IMAGES]))
    return {
        "originals": _to_uint8(images[:n]),
        "reconstructions": _to_uint8(ops.convert_to_numpy(model.reconstruct(images[:n]))),
        "samples": _to_uint8(ops.convert_to_numpy(model.sample(n))),
        "activity": activity,
        "kl_per_dim": kl_per_dim,
        "quality": np.array([psnr, math.nan if ssim is None else ssim, sharpness, png]),
        "latent_dim": np.array(model.latent_dim),
        "dims": np.array(math.prod(model.image_shape)),
    }


def evaluate(
    model: VAE,
    images: np.ndarray | ImageRows,
    split: str = "test",
    k: int = 5000,
    batch_size: int = 500,
    on_progress: ProgressCallback | None = None,
    max_memory: float | None = DEFAULT_MAX_MEMORY_GB,
    seed: int = 0,
    elbo_draws: int = ELBO_DRAWS,
) -> Evaluation:
    """ELBO, IWAE NLL with ``k`` samples (0: skip), active units and a diagnosis of ``images``,
    all under the model's likelihood; ``on_progress`` follows the IWAE estimate, which takes
    most of the time; ``max_memory`` (GB) bounds its working set (see :func:`iwae_nll`).

    The ELBO is the mean over the IWAE estimate's k draws per image, or over ``elbo_draws``
    draws of its own where k is smaller, with its standard error; ``seed`` sets the draws.
    ``batch_size``: images per encoder call for the active units.
    """
    if elbo_draws < 1:
        raise ValueError(f"Argument `elbo_draws` must be >= 1. Received: elbo_draws={elbo_draws}")
    images = as_unit_float(images)  # a split of 8-bit images is kept as uint8 rows
    activity, kl_per_dim = posterior_stats(model, images, batch_size=batch_size)
    active = int((activity > ACTIVE_UNIT_THRESHOLD).sum())
    found = _importance_pass(model, images, k, 500, max_memory, seed, on_progress, None) if k > 0 else None
    nll = float(found.nll.mean()) if found is not None else None
    if found is not None and k >= elbo_draws:
        elbo = elbo_from_draws(found.draw_log_px, found.kl)
    else:
        elbo = estimate_elbo(model, images, draws=elbo_draws, max_memory=max_memory, seed=seed)
    psnr, ssim, sharpness = reconstruction_quality(model, images[:QUALITY_IMAGES])
    eight_bit = model.likelihood.discrete_8bit
    bits = bits_per_dim(nll if nll is not None else -elbo.elbo, math.prod(model.image_shape)) if eight_bit else None
    png_bits = uniform_bits = None
    if eight_bit:
        from tuner.vae import image_metrics

        png_bits = image_metrics.png_bits_per_dim(np.round(images[:PNG_IMAGES] * 255).astype(np.uint8))
        uniform_bits = image_metrics.uniform_bits_per_dim()
    diagnosis = reading(elbo.recon, elbo.kl, active, model.latent_dim, sharpness, bits, png_bits)
    return Evaluation(
        split=split,
        n_images=len(images),
        elbo=elbo.elbo,
        recon=elbo.recon,
        kl=elbo.kl,
        nll_iwae=nll,
        k=k,
        active_units=active,
        latent_dim=model.latent_dim,
        kl_per_dim=[float(v) for v in kl_per_dim],
        diagnosis=diagnosis,
        likelihood=model.likelihood.name,
        bits_per_dim=bits,
        elbo_se=elbo.se,
        elbo_draws=elbo.draws,
        uniform_bits_per_dim=uniform_bits,
        png_bits_per_dim=png_bits,
        psnr_db=psnr,
        ssim=ssim,
        sharpness=sharpness,
    )
