"""The generated sprites, and factors of variation in .npz files, split with their images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tuner.config import DataConfig, SpritesConfig, validate
from tuner.errors import ConfigError, DataError
from tuner.vae.data import load_splits
from tuner.vae.data.sprites import FACTOR_NAMES, generate

SMALL = SpritesConfig(shapes=3, scales=2, orientations=4, positions=4, image_size=32)


def test_sprites_images_agree_with_their_factors() -> None:
    images, factors = generate(SMALL)
    assert images.shape == (3 * 2 * 4 * 4 * 4, 32, 32) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}  # binary
    assert factors.shape == (len(images), len(FACTOR_NAMES))
    assert [len(np.unique(factors[:, k])) for k in range(5)] == [3, 2, 4, 4, 4]
    # The shape's centre of mass moves right with pos_x and down with pos_y, and nothing else.
    rows, cols = np.indices((32, 32))
    mass = images.reshape(len(images), -1).sum(axis=1).astype(float)
    centre_x = (images * cols).reshape(len(images), -1).sum(axis=1) / mass
    centre_y = (images * rows).reshape(len(images), -1).sum(axis=1) / mass
    assert np.corrcoef(centre_x, factors[:, 3])[0, 1] > 0.98
    assert np.corrcoef(centre_y, factors[:, 4])[0, 1] > 0.98
    assert abs(np.corrcoef(centre_x, factors[:, 4])[0, 1]) < 0.05
    # The larger scale covers more pixels, for every shape, orientation and position.
    small, large = mass[factors[:, 1] == 0], mass[factors[:, 1] == 1]
    assert np.all(large > small)
    # Every image is whole inside the frame: the same shape and size covers one area anywhere.
    same = (factors[:, 0] == 0) & (factors[:, 1] == 1) & (factors[:, 2] == 0)
    assert len(np.unique(mass[same])) == 1


def test_sprites_are_deterministic_and_samples_follow_the_seed() -> None:
    first, factors = generate(SMALL)
    again, _ = generate(SMALL)
    assert np.array_equal(first, again)
    drawn = SMALL.model_copy(update={"samples": 50, "seed": 3})
    some, some_factors = generate(drawn)
    assert len(some) == 50 and np.array_equal(some, generate(drawn)[0])
    # A drawn combination is the same image as in the full grid.
    row = int(np.flatnonzero((factors == some_factors[7]).all(axis=1))[0])
    assert np.array_equal(some[7], first[row])
    assert not np.array_equal(some_factors, generate(drawn.model_copy(update={"seed": 4}))[1])


def test_the_sprites_dataset_splits_factors_with_images() -> None:
    splits = load_splits(DataConfig(dataset="sprites", sprites=SMALL, n_val=40))
    assert splits.factor_names == FACTOR_NAMES
    assert splits.val_factors is not None and splits.train_factors is not None and splits.test_factors is not None
    assert len(splits.val_factors) == len(splits.val) == 40
    assert len(splits.train_factors) == len(splits.train) and len(splits.test_factors) == len(splits.test)
    images, factors = generate(SMALL)
    for image, factor in zip(splits.val[:5], splits.val_factors[:5], strict=True):
        row = int(np.flatnonzero((factors == factor).all(axis=1))[0])
        assert np.array_equal(image[..., 0] * 255, images[row])


def _numbered(path: Path, n: int = 120, **arrays: Any) -> Path:
    """An .npz whose image i is filled with the value i: a split image names its own row."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 8, 8)).copy()
    np.savez(path, x=images, **arrays)
    return path


def test_npz_factors_are_split_with_their_images(tmp_path: Path) -> None:
    n = 120
    factors = np.stack([np.arange(n), np.arange(n) % 3], axis=1)
    path = _numbered(tmp_path / "data.npz", factors=factors, factor_names=np.array(["row", "colour"]))
    splits = load_splits(DataConfig(dataset="npz", path=str(path), n_train=50))
    assert splits.factor_names == ("row", "colour")
    for images, found in ((splits.val, splits.val_factors), (splits.train, splits.train_factors)):
        assert found is not None
        rows = np.round(np.asarray(images, dtype=np.float64)[:, 0, 0, 0] * (255 if images.dtype != np.uint8 else 1))
        assert np.array_equal(rows.astype(int), found[:, 0])
        assert np.array_equal(found[:, 1], found[:, 0] % 3)
    assert splits.train_factors is not None and len(splits.train_factors) == 50


def test_npz_factors_per_name(tmp_path: Path) -> None:
    path = _numbered(tmp_path / "data.npz", factors_row=np.arange(120), factors_parity=np.arange(120) % 2)
    splits = load_splits(DataConfig(dataset="npz", path=str(path)))
    assert splits.factor_names == ("row", "parity")
    assert splits.val_factors is not None and np.array_equal(splits.val_factors[:, 1], splits.val_factors[:, 0] % 2)


def test_an_npz_without_factors_has_none(tmp_path: Path) -> None:
    splits = load_splits(DataConfig(dataset="npz", path=str(_numbered(tmp_path / "data.npz"))))
    assert splits.val_factors is None and splits.factor_names == ()


@pytest.mark.parametrize(
    ("factors", "expected"),
    [
        (np.arange(119), "factors has 119 rows but there are 120 images"),
        (np.arange(120) / 2, "holds dtype float64, not integers"),
        (np.arange(120).astype(float), "convert with np.rint(f).astype(np.int64)"),
        (np.arange(120) - 5, "holds negative values (column 0: -5)"),
        (np.zeros((120, 2, 2), dtype=int), "factors has shape (120, 2, 2)"),
    ],
)
def test_bad_factors_are_refused_in_one_line(tmp_path: Path, factors: np.ndarray, expected: str) -> None:
    path = _numbered(tmp_path / "data.npz", factors=factors)
    with pytest.raises(DataError) as caught:
        load_splits(DataConfig(dataset="npz", path=str(path)))
    message = str(caught.value)
    assert expected in message and "\n" not in message and message.startswith(str(path))


def test_factors_given_twice_are_refused(tmp_path: Path) -> None:
    path = _numbered(tmp_path / "data.npz", factors=np.arange(120), factors_row=np.arange(120))
    with pytest.raises(DataError, match="holds both 'factors' and 'factors_row'"):
        load_splits(DataConfig(dataset="npz", path=str(path)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"dataset": "mnist", "sprites": {"shapes": 2}}, "applies only to dataset 'sprites'"),
        ({"dataset": "sprites", "path": "x.npz"}, "reads no file"),
        ({"dataset": "sprites", "sprites": {"shapes": 4}}, "less than or equal to 3"),
        ({"dataset": "sprites", "sprites": {"colour": 1}}, "colour"),
    ],
)
def test_bad_sprites_settings_are_refused(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        validate(DataConfig, data, "study.yaml")


def test_more_positions_than_pixels_are_refused() -> None:
    with pytest.raises(DataError, match="data.sprites.positions: 40 positions do not fit in 32-pixel images"):
        generate(SMALL.model_copy(update={"positions": 40}))
