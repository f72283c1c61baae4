"""Saving and loading trained runs: a run folder (``tuner train``/``refit``) or an exported
config with its weights beside it (``tuner export --weights``).

Apart from training, as Keras keeps ``keras/src/saving/`` apart from its trainers: reading a
run needs the model's builder, never the training loop.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

from tuner.config import TrainConfig, dump_config, load_train_config
from tuner.errors import TunerError
from tuner.storage._files import atomic_path  # the module: the package counts as importing Optuna
from tuner.vae.batches import resolve_batch_size, steps_per_epoch
from tuner.vae.data import Splits, load_splits
from tuner.vae.model import VAE
from tuner.vae.training import TrainResult, build_model, resolve_likelihood, with_likelihood

CONFIG_FILE, WEIGHTS_FILE, METRICS_JSON, METRICS_CSV = "config.yaml", "model.weights.h5", "metrics.json", "metrics.csv"


def save_run(result: TrainResult, out_dir: str | Path) -> Path:
    """Write the weights, the config as used and the per-epoch metrics (JSON and CSV).

    Each file is written under a temporary name and renamed when whole (:func:`atomic_path`),
    the weights first: a full disk leaves no half-written weights, and no config that would
    make the folder look like a finished run (:func:`load_run` needs both).

    Raises:
        StorageError: one line naming the file and the space needed when the disk is full.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS_FILE, need_bytes=weights_bytes(result.model)) as tmp:
        result.model.save_weights(tmp)
    with atomic_path(out / CONFIG_FILE) as tmp:
        dump_config(result.config, tmp)
    with atomic_path(out / METRICS_JSON) as tmp:
        tmp.write_text(json.dumps(result.history, indent=2) + "\n")
    if result.history:
        with atomic_path(out / METRICS_CSV) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(result.history[0]))
            writer.writeheader()
            writer.writerows(result.history)
    return out


def weights_bytes(model: VAE) -> int:
    """About the size of ``model``'s weights file: float32 weights and the optimizer's two
    moments per weight (Adam), plus HDF5's own overhead."""
    return 3 * 4 * int(model.count_params()) + (1 << 16)


def load_run(run_dir: str | Path, splits: Splits | None = None) -> tuple[TrainConfig, VAE, Splits]:
    """Rebuild a trained model from a directory written by :func:`save_run`, or from a config
    file with its weights beside it (``best.yaml`` + ``best.weights.h5`` from ``tuner export``)."""
    run = Path(run_dir)
    config_path, weights_path = run / CONFIG_FILE, run / WEIGHTS_FILE
    if run.is_file():
        config_path, weights_path = run, run.with_suffix(".weights.h5")
    if not config_path.is_file() or not weights_path.is_file():
        raise TunerError(
            f"{run}: not a training run (needs {config_path.name} and {weights_path.name}); "
            "run `tuner train`, or `tuner export --weights`"
        )
    config = load_train_config(config_path)
    splits = splits if splits is not None else load_splits(config.data)
    steps = steps_per_epoch(len(splits.train), resolve_batch_size(config.training.batch_size, len(splits.train)))
    # Keras warns about every layer that does not fit before it raises: the one line below says it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _load_weights(config, config_path, weights_path, splits, steps)


def _load_weights(
    config: TrainConfig, config_path: Path, weights_path: Path, splits: Splits, steps: int
) -> tuple[TrainConfig, VAE, Splits]:
    try:
        if config.model.likelihood != "auto":
            return config, restore_model(config, splits.image_shape, steps, weights_path), splits
        # "auto" in a saved file: an export of a study trial (trained with the likelihood the
        # data calls for), or a run from before likelihoods existed (Bernoulli whatever the
        # data). The weights' shapes tell them apart.
        resolved = resolve_likelihood(config, splits)
        try:
            return resolved, _quiet_restore(resolved, splits.image_shape, steps, weights_path), splits
        except ValueError:
            model = restore_model(config, splits.image_shape, steps, weights_path)
            return with_likelihood(config, model.likelihood.name), model, splits
    except (OSError, ValueError) as exc:  # h5py on a damaged file; Keras on other shapes
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TunerError(
            f"{weights_path}: cannot load these weights into the model {config_path.name} describes ({reason[:200]}); "
            "the file is damaged, or the config was edited after training: train again or export again"
        ) from None


def restore_model(config: TrainConfig, image_shape: tuple[int, int, int], steps: int, weights: str | Path) -> VAE:
    """Rebuild ``config``'s model for images of ``image_shape`` and load a weights file
    written by ``save_weights`` (``steps``: optimizer steps per epoch, which the β schedule
    is expressed in)."""
    if config.model.likelihood == "auto":
        # A study trial's stored config says "auto": it trained with the likelihood its data
        # called for. The decoder's width tells a discretized logistic (2 maps per channel)
        # from the one-map Bernoulli; callers that hold the data resolve it first
        # (resolve_likelihood; load_run does).
        # The decoder's width tells them apart: 1, 2 or 3 maps per channel (the last: RGB, coupled).
        for likelihood in ("bernoulli", "discretized_logistic"):
            try:
                return _quiet_restore(with_likelihood(config, likelihood), image_shape, steps, weights)
            except ValueError:
                continue
        return restore_model(with_likelihood(config, "discretized_logistic_rgb"), image_shape, steps, weights)
    model = build_model(config, image_shape, steps)
    model.optimizer.build(model.trainable_variables)  # the file holds the optimizer state too
    model.load_weights(weights)
    return model


def _quiet_restore(config: TrainConfig, image_shape: tuple[int, int, int], steps: int, weights: str | Path) -> VAE:
    # A tentative load: when the shapes do not match, Keras warns about every layer before it
    # raises, and the caller then tries the other decoder.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return restore_model(config, image_shape, steps, weights)
