"""What every dataset returns: raw images, and the split that training and scoring read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class RawImages:
    """Images as loaded. ``val_size`` is the dataset's standard validation size (taken from
    the end of ``train``), or None to use a seeded random fraction. ``source`` names the file
    or folder and ``train_name`` / ``test_name`` the arrays, for error messages."""

    train: np.ndarray
    test: np.ndarray | None
    val_size: int | None = None
    source: str = ""
    train_name: str | None = None
    test_name: str | None = None


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


