import os

import numpy as np
import pytest
from PIL import Image

from tuner.errors import DataError
from tuner.vae import data as D


@pytest.fixture
def mnist_dir():
    """The folder holding mnist.npz (TUNER_DATA_DIR, set by the environment or conftest.py)."""
    location = os.environ.get(D.DATA_DIR_ENV)
    if not location or not os.path.isfile(os.path.join(location, "mnist.npz")):
        pytest.skip(f"set {D.DATA_DIR_ENV} to a folder holding mnist.npz")
    return location


def test_mnist_standard_split_from_local_dir(mnist_dir):
    splits = D.prepare(D.KerasDataset("mnist"))
    assert splits.train.shape == (50_000, 28, 28, 1) and splits.val.shape == (10_000, 28, 28, 1)
    assert splits.test.shape == (10_000, 28, 28, 1) and splits.test.dtype == np.uint8  # read as it is scored
    # 8-bit training images stay uint8 (a quarter of float32); the batches are float32.
    assert isinstance(splits.train, D.ImageRows) and splits.train.dtype == np.uint8
    assert splits.val.dtype == np.float32 and splits.val.min() >= 0.0 and splits.val.max() <= 1.0
    raw = np.load(os.path.join(mnist_dir, "mnist.npz"))["x_train"]
    np.testing.assert_allclose(splits.val[0, ..., 0], raw[50_000] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(splits.train[7][..., 0], raw[7])


def test_subsets_and_static_binarization_of_eval_splits(mnist_dir):
    splits = D.prepare(D.KerasDataset("mnist"), n_train=100, n_val=50, dynamic_binarization=True)
    assert len(splits.train) == 100 and len(splits.val) == 50
    assert set(np.unique(splits.val)) <= {0.0, 1.0}  # validation binarized once...
    again = D.prepare(D.KerasDataset("mnist"), n_train=100, n_val=50, dynamic_binarization=True)
    np.testing.assert_array_equal(splits.val, again.val)  # ...with a fixed seed
    assert len(np.unique(splits.train)) > 2  # training stays grey; the model re-samples it


def test_npz_and_seeded_split(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (60, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x=images)
    a = D.prepare(D.NpzDataset(str(tmp_path / "mine.npz")), split_seed=3)
    b = D.prepare(D.NpzDataset(str(tmp_path / "mine.npz")), split_seed=3)
    np.testing.assert_array_equal(a.val, b.val)
    assert len(a.train) + len(a.val) + len(a.test) == 60 and a.image_shape == (12, 12, 1)


def test_image_folder_rgb_resized(tmp_path):
    for i, size in enumerate([(20, 20), (30, 24), (16, 16)] * 4):
        Image.new("RGB", size, (i * 10, 0, 255)).save(tmp_path / f"im{i}.png")
    splits = D.prepare(D.ImageFolder(str(tmp_path), size=[16, 16], color="rgb"))
    assert splits.image_shape == (16, 16, 3)
    assert D.as_unit_float(splits.train)[..., 2].max() == pytest.approx(1.0)


def test_image_folder_colour_auto(tmp_path):
    """auto: a folder with colour loads as RGB, a grey one (even saved as RGB) as grey."""
    grey, colour = tmp_path / "grey", tmp_path / "colour"
    grey.mkdir(), colour.mkdir()
    for i in range(12):
        Image.new("L", (8, 8), i * 20).save(grey / f"l{i}.png")
        Image.new("RGB", (8, 8), (i * 20,) * 3).save(grey / f"rgb{i}.png")
        Image.new("RGB", (8, 8), (i * 20, 5, 200)).save(colour / f"c{i}.png")
    assert D.prepare(D.ImageFolder(str(grey))).image_shape == (8, 8, 1)
    assert D.prepare(D.ImageFolder(str(colour))).image_shape == (8, 8, 3)
    assert D.prepare(D.ImageFolder(str(colour), color="grayscale")).image_shape == (8, 8, 1)
    assert D.prepare(D.ImageFolder(str(grey), color="rgb")).image_shape == (8, 8, 3)
    from tuner.config import DataConfig

    assert DataConfig().color == "auto"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: D.NpzDataset(str(p / "missing.npz")), "missing.npz: file not found"),
        (lambda p: D.ImageFolder(str(p)), "no PNG or JPEG images"),
        (lambda p: D.KerasDataset("cifar"), "unknown dataset 'cifar'"),
    ],
)
def test_bad_sources(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        D.prepare(make(tmp_path))


def test_bad_arrays(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.zeros((10, 784), np.uint8))
    with pytest.raises(DataError, match=r"flat.npz: images must have shape"):
        D.prepare(D.NpzDataset(str(tmp_path / "flat.npz")))
    np.savez(tmp_path / "ints.npz", x=np.zeros((10, 8, 8), np.int64))
    with pytest.raises(DataError, match="dtype int64"):
        D.prepare(D.NpzDataset(str(tmp_path / "ints.npz")))
    np.savez(tmp_path / "big.npz", x=np.full((10, 8, 8), 255.0))
    with pytest.raises(DataError, match=r"lie in \[0, 1\]"):
        D.prepare(D.NpzDataset(str(tmp_path / "big.npz")))
    np.savez(tmp_path / "nokey.npz", y=np.zeros(3))
    with pytest.raises(DataError, match="no image array"):
        D.prepare(D.NpzDataset(str(tmp_path / "nokey.npz")))


def test_mixed_sizes_without_resize(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (9, 8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="2 different sizes; set data.size"):
        D.prepare(D.ImageFolder(str(tmp_path)))
