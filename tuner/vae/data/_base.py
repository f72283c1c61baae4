"""What every dataset returns: raw images, and the split that training and scoring read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class RawImages:
    """Images as loaded. ``val_size`` is the dataset's standard validation size (taken from
    the end of ``train``), or None to use a seeded random fraction. ``source`` names the file
    or folder and ``train_name`` / ``test_name`` the arrays, for error messages. ``factors``:
    the known factors of variation of the ``train`` images, (N, K) as stored (checked by the
    split), named by ``factor_names``; the test images have none."""

    train: np.ndarray
    test: np.ndarray | None
    val_size: int | None = None
    source: str = ""
    train_name: str | None = None
    test_name: str | None = None
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] = ()


class ImageRows:
    """Some rows of a uint8 image array (often a memory map of the disk cache), not copied.

    The training split of 8-bit data is one of these: every worker reads the same pages of the
    cached file instead of holding a float32 copy (4 bytes a pixel) of its own; a batch
    becomes float32 only when :class:`~tuner.vae.batches.TrainBatches` produces it. Indexing
    with an integer or an array of them reads those images (uint8); a slice is another view;
    ``numpy.asarray`` reads them all.
    """

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: np.ndarray) -> ImageRows:
        """The rows ``indices`` of this view, as a view."""
        return ImageRows(self.base, self.rows[indices])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return ImageRows(self.base, self.rows[key])
        return np.asarray(self.base[self.rows[key]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        images = np.asarray(self.base[self.rows])
        return images if dtype is None else images.astype(dtype)


def as_unit_float(images: Any) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 (or an :class:`ImageRows` view) divided by 255,
    float images as they are."""
    array = np.asarray(images)
    return array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32, copy=False)


@dataclass
class Splits:
    """Images of shape (N, H, W, C). ``val`` is float32 in [0, 1] (it is read every epoch);
    ``train`` and ``test`` are that too, or, for 8-bit data, uint8 rows (:class:`ImageRows`,
    0–255) that the training batches and :func:`tuner.vae.evaluation.evaluate` turn into
    float32 as they read them (:func:`as_unit_float` converts a split whole).

    ``*_factors``: the factors of variation of each split's images, (N, K) int64, row for row,
    when the data has them (``factor_names`` names the K columns); never trained on, read by
    the disentanglement scores. The test split of a file with its own test images has none."""

    train: np.ndarray | ImageRows
    val: np.ndarray
    test: np.ndarray | ImageRows
    factor_names: tuple[str, ...] = ()
    train_factors: np.ndarray | None = None
    val_factors: np.ndarray | None = None
    test_factors: np.ndarray | None = None

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
