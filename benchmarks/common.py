"""Shared pieces of the benchmarks: a plain-Keras reference VAE and throughput timers.

The reference is the VAE written the common Keras 3 way (a Sampling layer, a model whose
``compute_loss`` adds a constant β·KL): same architecture, batch size and data as tuner's.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "datasets"
if "TUNER_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["TUNER_DATA_DIR"] = str(SHARED)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402


class Sampling(layers.Layer):
    def __init__(self, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any) -> Any:
        mean, log_var = inputs
        return mean + ops.exp(0.5 * log_var) * keras.random.normal(ops.shape(mean), seed=self.seed_generator)


class ReferenceVAE(keras.Model):
    def __init__(self, latent_dim: int = 16, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = beta
        inputs = keras.Input((28, 28, 1))
        h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
        h = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
        h = layers.Flatten()(h)
        mean, log_var = layers.Dense(latent_dim)(h), layers.Dense(latent_dim)(h)
        self.encoder = keras.Model(inputs, [mean, log_var, Sampling()([mean, log_var])])
        z = keras.Input((latent_dim,))
        h = layers.Dense(7 * 7 * 64, activation="relu")(z)
        h = layers.Reshape((7, 7, 64))(h)
        h = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(h)
        h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
        self.decoder = keras.Model(z, layers.Conv2DTranspose(1, 3, padding="same")(h))

    def call(self, x: Any) -> Any:
        mean, log_var, z = self.encoder(x)
        return self.decoder(z), mean, log_var

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits, mean, log_var = y_pred
        recon = ops.sum(ops.binary_crossentropy(x, logits, from_logits=True), axis=(1, 2, 3))
        kl = -0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=1)
        return ops.mean(recon + self.beta * kl)


def mnist(n_train: int, n_val: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    from tuner.config import DataConfig
    from tuner.vae.data import as_unit_float, load_splits

    splits = load_splits(DataConfig(n_train=n_train, n_val=n_val))
    return as_unit_float(splits.train), splits.val  # plain Keras trains on float32 arrays


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.times.append(time.perf_counter() - self._t)


def time_reference(train: np.ndarray, val: np.ndarray, batch: int, epochs: int, steps_per_execution: int = 1) -> dict:
    keras.utils.set_random_seed(0)
    model = ReferenceVAE()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=steps_per_execution)
    timer = EpochTimer()
    start = time.perf_counter()
    model.fit(
        train,
        epochs=epochs,
        batch_size=batch,
        validation_data=(val,),
        validation_batch_size=max(batch, 500),
        callbacks=[timer],
        verbose=0,
        shuffle=True,
    )
    return summarize(timer.times, len(train), time.perf_counter() - start)


def time_tuner(
    train: np.ndarray, val: np.ndarray, batch: int, epochs: int, model: dict | None = None, **training: Any
) -> dict:
    from tuner.config import TrainConfig
    from tuner.vae.data import Splits
    from tuner.vae.training import train as train_config

    config = TrainConfig.model_validate(
        {
            "model": model or {},
            "schedule": {"name": "linear", "max_beta": 1.0, "anneal_epochs": 1},
            "training": {"epochs": epochs, "batch_size": batch, **training},
        }
    )
    start = time.perf_counter()
    result = train_config(config, Splits(train, val, val))
    trained = result.steps_per_epoch * min(batch, len(train))  # full batches only (tuner/batches.py)
    summary = summarize([h["epoch_time"] for h in result.history], trained, time.perf_counter() - start)
    summary["val_elbo"] = result.val_elbo
    return summary


def summarize(epoch_times: list[float], n_images: int, total_s: float) -> dict:
    """The first epoch holds the compilation; throughput is the median of the others."""
    steady = statistics.median(epoch_times[1:]) if len(epoch_times) > 1 else epoch_times[0]
    return {
        "images_per_s": n_images / steady,
        "steady_epoch_s": steady,
        "first_epoch_s": epoch_times[0],
        "compile_s": max(0.0, epoch_times[0] - steady),
        "total_s": total_s,
    }


def device_name() -> str:
    """The accelerator JAX runs on, e.g. ``gpu: NVIDIA H200 x1`` (``cpu: cpu x1`` without one)."""
    import jax

    devices = jax.devices()
    return f"{devices[0].platform}: {getattr(devices[0], 'device_kind', '?')} x{len(devices)}"


def write(result: dict, path: str | None, quiet: bool = False) -> None:
    text = json.dumps(result, indent=2, default=float)
    if not quiet:
        print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


__all__ = ["ReferenceVAE", "mnist", "time_reference", "time_tuner", "write", "math"]
