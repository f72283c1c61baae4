"""Training batches: reshuffled every epoch, and all of the same size.

Keras cuts an array into batches and ends the epoch with a smaller one. Under XLA a new
batch size is a new program: on MNIST (50,000 images, batch 128) every trial compiled its
training step twice, once for 390 full batches and once for the last 80 images. Here the
remainder is left out instead (``drop_last`` in PyTorch, ``drop_remainder`` in tf.data); a
fresh permutation each epoch means every image is still seen, just not in every epoch.

On TensorFlow this feeds ``fit`` as fast as Keras's own array path (1,090 vs 1,075 images/s,
2-core CPU, four alternating runs each).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

DEFAULT_BATCH = 128
MIN_AUTO_BATCH = 16
MIN_STEPS_PER_EPOCH = 25


def auto_batch_size(n_images: int) -> int:
    """``batch_size: auto``: 128, or on a small training set the largest power of two that
    still gives an epoch :data:`MIN_STEPS_PER_EPOCH` steps (at least 16).

    What a model learns in a CPU budget is counted in optimizer steps, not epochs: at 128, a
    folder of 695 training crops is 5 steps an epoch. Measured (``benchmarks/photos_quality.py``,
    1,000 crops at 64 px, equal CPU time): batch 32 reached 5.78 bits/dim and 17.4 dB PSNR
    where 128 reached 6.94 and 13.2. MNIST-sized sets (3,200 images and up) keep 128.
    """
    fits = n_images // MIN_STEPS_PER_EPOCH
    if fits >= DEFAULT_BATCH:
        return DEFAULT_BATCH
    return max(MIN_AUTO_BATCH, 1 << max(0, fits.bit_length() - 1))


def resolve_batch_size(batch_size: int | str, n_images: int) -> int:
    """``batch_size`` as a number of images (``auto``: :func:`auto_batch_size`)."""
    return auto_batch_size(n_images) if batch_size == "auto" else int(batch_size)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of :class:`TrainBatches` (a set smaller than one batch
    is a single batch)."""
    return max(1, n_images // batch_size)


def validation_batch_size(n_images: int, preferred: int) -> int:
    """The largest batch size from ``preferred`` down to half of it that divides ``n_images``
    (all validation batches then share one compiled program), else ``preferred``; a set no
    larger than ``preferred`` is one batch."""
    if n_images <= preferred:
        return max(1, n_images)
    for size in range(preferred, max(1, preferred // 2) - 1, -1):
        if n_images % size == 0:
            return size
    return preferred


class TrainBatches(keras.utils.PyDataset):
    """``len(images) // batch_size`` batches of ``batch_size`` images, in a new random order
    every epoch (seeded, so a trial is reproducible). ``images``: float32 in [0, 1], or uint8
    (an array or :class:`~tuner.vae.data.ImageRows`), turned into float32 in [0, 1] one batch
    at a time, so the whole set is never held as float32.

    ``on_device`` (JAX only): the images are copied to the accelerator once and each batch is
    gathered there, so a step no longer waits on a host-to-device copy of its batch (Keras
    passes arrays already on the device through untouched). MNIST takes 157 MB.
    """

    def __init__(self, images: Any, batch_size: int, seed: int = 0, on_device: bool = False) -> None:
        super().__init__()
        self.images = images
        if on_device and keras.backend.backend() == "jax":
            import jax

            self.images = jax.device_put(np.asarray(images))  # uint8 stays uint8: a quarter of float32
        self.batch_size = min(batch_size, len(images))
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(images))

    def __len__(self) -> int:
        return steps_per_epoch(len(self.images), self.batch_size)

    def __getitem__(self, index: int) -> Any:
        # A 1-tuple: the input alone (the VAE's target is its input).
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        # Sorted rows read memory in order; the order inside a batch does not matter.
        batch = self.images[np.sort(rows)]
        if batch.dtype == np.uint8:  # 8-bit images (tuner.vae.data.ImageRows): float32 per batch
            batch = batch.astype("float32") / 255.0
        return (batch,)

    def on_epoch_end(self) -> None:
        self._order = self._rng.permutation(len(self.images))
