"""Images checked and converted to float32 NHWC in [0, 1], then the fixed train / validation /
test split."""

from __future__ import annotations

import math

import numpy as np

from tuner.errors import DataError
from tuner.vae.data._base import Dataset, ImageRows, Splits, as_unit_float

# Validation images are binarized once with this fixed seed, whatever the trial's seed, so that
# every trial of a study is scored on exactly the same binary images.
EVAL_BINARIZATION_SEED = 1234

_EXPECTED_SHAPE = "images must have shape (N, H, W) or (N, H, W, C) with C = 1 (grey) or 3 (RGB)"
_EXPECTED_VALUES = "images must be uint8 or float in [0, 1]"


def to_unit_float(images: np.ndarray, source: str, *, array: str | None = None) -> np.ndarray:
    """Validate and convert images to float32 NHWC in [0, 1] (see :func:`checked_images`)."""
    return as_unit_float(checked_images(images, source, array=array))


def checked_images(images: np.ndarray, source: str, *, array: str | None = None) -> np.ndarray:
    """Validate images and return them NHWC: uint8 as they are (a view: a memory map stays
    one), float as float32 in [0, 1].

    Args:
        images: (N, H, W) or (N, H, W, 1 | 3), uint8 or float in [0, 1].
        source: the file or folder, named first in every message.
        array: the array's name in the file (``x_train``), named in the messages.

    Raises:
        DataError: one line saying what is wrong (dtype, shape, no images, NaN / inf, range).
    """
    images = np.asanyarray(images)  # a memory map stays one
    held = f"array {array!r}" if array else "the images"
    kind, shape = images.dtype.kind, images.shape
    if kind in "OSUVMm":
        what = {"O": "Python objects", "S": "bytes", "U": "strings", "V": "records"}.get(kind, "dates or times")
        raise DataError(
            f"{source}: {_EXPECTED_VALUES}, but {held} holds {what} (dtype {images.dtype}); store pixel values"
        )
    if kind == "c":
        raise DataError(
            f"{source}: {_EXPECTED_VALUES}, but {held} holds complex numbers (dtype {images.dtype}); store real values"
        )
    if images.ndim not in (3, 4):
        hint = ""
        if images.ndim == 2 and shape[1] > 0 and math.isqrt(shape[1]) ** 2 == shape[1]:
            side = math.isqrt(shape[1])
            hint = f"; flattened images? reshape them with x.reshape(-1, {side}, {side})"
        raise DataError(f"{source}: {_EXPECTED_SHAPE}, but {held} is {images.ndim}-D with shape {shape}{hint}")
    if images.ndim == 4 and shape[-1] not in (1, 3):
        hint = "; channels first? use x.transpose(0, 2, 3, 1)" if shape[1] in (1, 3) else ""
        raise DataError(f"{source}: {_EXPECTED_SHAPE}, but {held} has {shape[-1]} channels (shape {shape}){hint}")
    if shape[0] == 0:
        raise DataError(f"{source}: {held} holds no images (shape {shape}); give at least a few hundred")
    if shape[1] == 0 or shape[2] == 0:
        raise DataError(f"{source}: {held} holds images of size 0 (shape {shape}); images need at least 1×1 pixels")
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return images
    if kind != "f":
        if kind == "b":
            fix = "convert with x.astype(np.uint8) * 255"
        else:
            smallest, largest = int(images.min()), int(images.max())
            fix = f"values {smallest} to {largest}: " + (
                "convert with x.astype(np.uint8)"
                if smallest >= 0 and largest <= 255
                else "scale them to 0-255 or [0, 1]"
            )
        raise DataError(f"{source}: {_EXPECTED_VALUES}, got dtype {images.dtype} in {held} ({fix})")
    finite = np.isfinite(images)
    if not finite.all():
        n_nan = int(np.isnan(images).sum())
        n_inf = int(finite.size - finite.sum()) - n_nan
        counts = " and ".join(f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "infinite")) if n)
        raise DataError(
            f"{source}: {held} holds {counts} pixel values; pixels must be finite numbers in [0, 1]: replace them "
            "(numpy.nan_to_num) or drop those images"
        )
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise DataError(
            f"{source}: float images must lie in [0, 1], but {held} holds values from {low:g} to {high:g}; scale "
            "them (e.g. divide 0-255 values by 255)"
        )
    return images.astype(np.float32)


def checked_factors(factors: np.ndarray, n_images: int, source: str, names: tuple[str, ...] = ()) -> np.ndarray:
    """Validate the factors of variation of ``n_images`` images and return them (N, K) int64.

    Raises:
        DataError: one line naming the file: not one row per image, not integers (floats,
            booleans), negative values, or no factor at all.
    """
    factors = np.asanyarray(factors)
    what = "factors" if not names or names[0] == "factor_0" else "factors (" + ", ".join(names) + ")"
    fix = "factors are one row of non-negative integer class indices per image, shape (N, K)"
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or factors.shape[1] == 0:
        raise DataError(f"{source}: {what} has shape {factors.shape}; {fix}")
    if len(factors) != n_images:
        raise DataError(f"{source}: {what} has {len(factors)} rows but there are {n_images} images; {fix}")
    if factors.dtype.kind not in "iu":
        hint = (
            "; whole numbers stored as floats: convert with np.rint(f).astype(np.int64)"
            if factors.dtype.kind == "f" and np.all(np.isfinite(factors)) and np.all(factors == np.round(factors))
            else "; discretize continuous factors into bins (numpy.digitize)"
            if factors.dtype.kind == "f"
            else ""
        )
        raise DataError(f"{source}: {what} holds dtype {factors.dtype}, not integers; {fix}{hint}")
    if factors.size and factors.min() < 0:
        column = int(np.argmin(factors.min(axis=0)))
        raise DataError(
            f"{source}: {what} holds negative values (column {column}: {int(factors[:, column].min())}); {fix}: "
            "number the classes from 0"
        )
    return factors.astype(np.int64)


def binarize(images: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli(pixel) draw per pixel, with a fixed seed (for validation and test)."""
    rng = np.random.default_rng(seed)
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


def _rows_or_float(images: np.ndarray) -> np.ndarray | ImageRows:
    return ImageRows(images, np.arange(len(images))) if images.dtype == np.uint8 else images


def _take(images: np.ndarray | ImageRows, indices: np.ndarray) -> np.ndarray | ImageRows:
    return images.take(indices) if isinstance(images, ImageRows) else images[indices]


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
    raw = dataset.load()
    source = raw.source or str(getattr(dataset, "path", None) or getattr(dataset, "name", dataset.kind))
    # 8-bit training and test images stay uint8 rows of the loaded (often memory-mapped)
    # array: training batches and `evaluate` turn them into float32 as they read them.
    train = _rows_or_float(checked_images(raw.train, source, array=raw.train_name))
    factors = None if raw.factors is None else checked_factors(raw.factors, len(train), source, raw.factor_names)
    # Each image's row in raw.train, cut and shuffled with it: its factors follow it.
    rows, test_rows = np.arange(len(train)), None
    test: np.ndarray | ImageRows
    rng = np.random.default_rng(split_seed)
    if raw.test is None:
        # No test set shipped: hold one out first, with the same fraction as validation.
        order = rng.permutation(len(train))
        n_test = max(1, int(len(train) * val_fraction))
        test, train = _take(train, order[:n_test]), _take(train, order[n_test:])
        test_rows, rows = rows[order[:n_test]], rows[order[n_test:]]
        minimum = 3
    else:
        test = _rows_or_float(checked_images(raw.test, source, array=raw.test_name))
        if test.shape[1:] != train.shape[1:]:
            raise DataError(
                f"{source}: test images ({raw.test_name or 'test'}) are {test.shape[1:]} but training images "
                f"({raw.train_name or 'train'}) are {train.shape[1:]}; both must share one size and channel count"
            )
        minimum = 2
    if raw.val_size is not None:
        train, val = train[: -raw.val_size], train[-raw.val_size :]
        rows, val_rows = rows[: -raw.val_size], rows[-raw.val_size :]
    else:
        order = rng.permutation(len(train))
        n_hold = max(1, int(len(train) * val_fraction))
        val, train = _take(train, order[:n_hold]), _take(train, order[n_hold:])
        val_rows, rows = rows[order[:n_hold]], rows[order[n_hold:]]
    if len(train) == 0:
        raise DataError(
            f"{source}: too few images ({len(raw.train)}) to hold out a validation split; give at least {minimum} "
            "(a VAE learns from thousands)"
        )
    for option, wanted, have in (("n_train", n_train, len(train)), ("n_val", n_val, len(val))):
        if wanted and wanted > have:
            raise DataError(
                f"data.{option}: {wanted} images asked, but {source} holds only {have} for that split; "
                f"lower data.{option} (or leave it out to use all {have})"
            )
    train, rows = (train[:n_train], rows[:n_train]) if n_train else (train, rows)
    val_rows = val_rows[:n_val] if n_val else val_rows
    # float32 only after n_val has cut it: the held-out rows of a large folder are many.
    val = as_unit_float(val[:n_val] if n_val else val)
    if dynamic_binarization:
        val = binarize(val, EVAL_BINARIZATION_SEED)
        test = binarize(as_unit_float(test), EVAL_BINARIZATION_SEED + 1)
    if factors is None:
        return Splits(train=train, val=val, test=test)
    return Splits(
        train=train,
        val=val,
        test=test,
        factor_names=raw.factor_names or tuple(f"factor_{i}" for i in range(factors.shape[1])),
        train_factors=factors[rows],
        val_factors=factors[val_rows],
        test_factors=None if test_rows is None else factors[test_rows],
    )
