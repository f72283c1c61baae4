"""Datasets: where images come from, and the fixed train / validation / test split.

A dataset is a small object with ``get_config``/``from_config`` whose :meth:`load` returns
raw images. :func:`prepare` turns them into float32 NHWC arrays in [0, 1] with a split that
is the same for every trial of a study, so validation ELBOs are comparable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tuner.config import DataConfig
from tuner.errors import DataError

DATA_DIR_ENV = "TUNER_DATA_DIR"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Validation images are binarized once with this fixed seed, whatever the trial's seed, so that
# every trial of a study is scored on exactly the same binary images.
EVAL_BINARIZATION_SEED = 1234


@dataclass
class RawImages:
    """Images as loaded. ``val_size`` is the dataset's standard validation size (taken from
    the end of ``train``), or None to use a seeded random fraction."""

    train: np.ndarray
    test: np.ndarray | None
    val_size: int | None = None


@dataclass
class Splits:
    """float32 arrays of shape (N, H, W, C) with values in [0, 1]."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        height, width, channels = self.train.shape[1:]
        return int(height), int(width), int(channels)


class Dataset:
    kind: ClassVar[str] = ""

    def load(self) -> RawImages:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Dataset:
        return cls(**config)


def _load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found; {what}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-npz file: say which one
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


def _npz_images(arrays: dict[str, np.ndarray], path: Path) -> RawImages:
    if "x_train" in arrays:
        return RawImages(arrays["x_train"], arrays.get("x_test"))
    for key in ("x", "images"):
        if key in arrays:
            return RawImages(arrays[key], None)
    raise DataError(f"{path}: no image array; expected keys x_train/x_test (Keras layout), x or images")


class KerasDataset(Dataset):
    """``mnist`` or ``fashion_mnist``: from ``<name>.npz`` in a data directory when one is
    configured (``path`` or the ``TUNER_DATA_DIR`` variable), else Keras's own downloader."""

    kind = "keras"
    NAMES: ClassVar[tuple[str, ...]] = ("mnist", "fashion_mnist")

    def __init__(self, name: str, path: str | None = None) -> None:
        if name not in self.NAMES:
            raise DataError(f"dataset: unknown dataset {name!r}; choose one of {list(self.NAMES)}, or give a path")
        self.name = name
        self.path = path

    def _local_file(self) -> Path | None:
        location = self.path or os.environ.get(DATA_DIR_ENV)
        if not location:
            return None
        path = Path(location).expanduser()
        return path / f"{self.name}.npz" if path.is_dir() or not path.suffix else path

    def load(self) -> RawImages:
        local = self._local_file()
        if local is not None:
            arrays = _load_npz(local, f"put {self.name}.npz (Keras layout) there or unset {DATA_DIR_ENV}")
            raw = _npz_images(arrays, local)
        else:
            import keras

            loader = getattr(keras.datasets, self.name)
            try:
                (x_train, _), (x_test, _) = loader.load_data()
            except Exception as exc:  # noqa: BLE001 - no network, a proxy, a truncated download...
                reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                raise DataError(
                    f"{self.name}: cannot download it with Keras ({reason}). Without internet, put "
                    f"{self.name}.npz (Keras layout) in a folder and set {DATA_DIR_ENV} to it, or data.path"
                ) from None
            raw = RawImages(x_train, x_test)
        # The standard VAE split of both datasets: the last 10,000 training images validate.
        raw.val_size = 10_000 if len(raw.train) == 60_000 else None
        return raw

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path}


class NpzDataset(Dataset):
    """A user's own ``.npz`` file: Keras layout (x_train, x_test) or a single x / images array."""

    kind = "npz"

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> RawImages:
        path = Path(self.path).expanduser()
        return _npz_images(_load_npz(path, "check data.path"), path)

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path}


class ImageFolder(Dataset):
    """A folder of PNG/JPEG images (searched recursively), resized to ``size`` = [height,
    width] when given; without ``size`` all images must share one size. ``color``: ``auto``
    (the default) loads the folder as RGB when any image has colour (R, G, B not all equal),
    else as grey; ``grayscale`` or ``rgb`` force one."""

    kind = "folder"

    def __init__(self, path: str, size: list[int] | None = None, color: str = "auto") -> None:
        if color not in ("auto", "grayscale", "rgb"):
            raise DataError(f"data.color: must be 'auto', 'grayscale' or 'rgb', got {color!r}")
        self.path = path
        self.size = list(size) if size else None
        self.color = color

    def load(self) -> RawImages:
        from PIL import Image

        folder = Path(self.path).expanduser()
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found; check data.path")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: no PNG or JPEG images found")
        images = []
        for file in files:
            try:
                with Image.open(file) as image:
                    image = image.convert("L" if self.color == "grayscale" else "RGB")  # auto: decided below
                    if self.size:
                        image = image.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                    images.append(np.asarray(image, dtype=np.uint8))
            except OSError as exc:
                raise DataError(f"{file}: cannot read image ({exc})") from None
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise DataError(
                f"{folder}: images have {len(shapes)} different sizes; set data.size: [height, width] to resize them"
            )
        stacked = np.stack(images)
        if self.color == "auto" and _all_grey(stacked):
            stacked = stacked[..., 0]  # what convert("L") gives for R = G = B
        return RawImages(stacked, None)

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "color": self.color}


def _all_grey(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def to_unit_float(images: np.ndarray, source: str) -> np.ndarray:
    """Validate and convert images to float32 NHWC in [0, 1]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise DataError(f"{source}: images must have shape (N, H, W) or (N, H, W, 1|3) with N > 0, got {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{source}: images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise DataError(f"{source}: float images must lie in [0, 1] (scale them, e.g. divide by 255)")
    return images


def binarize(images: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli(pixel) draw per pixel, with a fixed seed (for validation and test)."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def prepare(
    dataset: Dataset,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    dynamic_binarization: bool = False,
    val_fraction: float = 1 / 6,
    split_seed: int = 0,
) -> Splits:
    """Load and split. The split depends only on the data and ``split_seed``, never on a
    trial. With dynamic binarization the training images stay grey (the model re-samples them
    every step) while validation and test are binarized once with a fixed seed."""
    source = str(getattr(dataset, "path", None) or getattr(dataset, "name", dataset.kind))
    raw = dataset.load()
    train = to_unit_float(raw.train, source)
    rng = np.random.default_rng(split_seed)
    if raw.test is None:
        # No test set shipped: hold one out first, with the same fraction as validation.
        order = rng.permutation(len(train))
        n_test = max(1, int(len(train) * val_fraction))
        test, train = train[order[:n_test]], train[order[n_test:]]
    else:
        test = to_unit_float(raw.test, source)
    if raw.val_size is not None:
        train, val = train[: -raw.val_size], train[-raw.val_size :]
    else:
        order = rng.permutation(len(train))
        n_hold = max(1, int(len(train) * val_fraction))
        val, train = train[order[:n_hold]], train[order[n_hold:]]
    if len(train) == 0:
        raise DataError(f"{source}: too few images to hold out a validation split")
    if test.shape[1:] != train.shape[1:]:
        raise DataError(f"{source}: test images are {test.shape[1:]} but training images are {train.shape[1:]}")
    for option, wanted, have in (("n_train", n_train, len(train)), ("n_val", n_val, len(val))):
        if wanted and wanted > have:
            raise DataError(
                f"data.{option}: {wanted} images asked, but {source} holds only {have} for that split; "
                f"lower data.{option} (or leave it out to use all {have})"
            )
    train = train[:n_train] if n_train else train
    val = val[:n_val] if n_val else val
    if dynamic_binarization:
        val = binarize(val, EVAL_BINARIZATION_SEED)
        test = binarize(test, EVAL_BINARIZATION_SEED + 1)
    return Splits(train=train, val=val, test=test)


def dataset_for(config: DataConfig) -> Dataset:
    """The dataset that a config's ``data`` section names."""
    if config.dataset == "npz":
        return NpzDataset(config.path or "")
    if config.dataset == "folder":
        return ImageFolder(config.path or "", config.size, config.color)
    return KerasDataset(config.dataset, config.path)


def load_splits(config: DataConfig) -> Splits:
    """Load a config's ``data`` section and split it (see :func:`prepare`)."""
    return prepare(
        dataset_for(config),
        n_train=config.n_train,
        n_val=config.n_val,
        dynamic_binarization=config.dynamic_binarization,
        val_fraction=config.val_fraction,
        split_seed=config.split_seed,
    )
