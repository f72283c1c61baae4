"""``dataset: cifar10`` / ``cifar100`` by name: a local copy in Keras's layout (or the folder
extracted from Keras's download), its checks, the split, and the offline refusal.

Fast: the copies are tiny (a CIFAR copy may hold the first N images of each split), and only
the download test imports Keras.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tests.helpers import refused
from tuner.config import DataConfig
from tuner.vae import data as D
from tuner.vae.data import keras_datasets

u8 = np.uint8
N_TRAIN, N_TEST = 60, 20
NAMES = ["cifar10", "cifar100"]


def cifar_arrays(n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> dict[str, np.ndarray]:
    """Random images in the layout of keras.datasets.cifar10.load_data(), N images per split."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=u8),
        "y_train": rng.integers(0, 10, (n_train, 1), dtype=u8),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=u8),
        "y_test": rng.integers(0, 10, (n_test, 1), dtype=u8),
    }


def save(file: Path, arrays: dict[str, Any]) -> None:
    np.savez(file, **arrays)


def unit(images: Any) -> np.ndarray:
    """A split as float32 in [0, 1]: the training split may be kept as uint8 rows."""
    array = np.asarray(images)
    return array.astype(np.float32) / np.float32(255) if array.dtype == u8 else array


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_keras_cache(tmp_path, monkeypatch) -> Path:
    """An empty Keras home, so that no real cache on this machine is found."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


# --- a copy of <name>.npz ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_small_copy_in_the_data_dir_loads_by_name(tmp_path, monkeypatch, name):
    arrays = cifar_arrays()
    save(tmp_path / f"{name}.npz", arrays)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    splits = D.load_splits(DataConfig(dataset=name))
    # A subset: split by the seeded val_fraction (1/6 of 60 = 10), the test split as shipped.
    assert splits.train.shape == (50, 32, 32, 3) and splits.val.shape == (10, 32, 32, 3)
    assert splits.test.shape == (N_TEST, 32, 32, 3) and splits.image_shape == (32, 32, 3)
    for split in (unit(splits.train), splits.val, unit(splits.test)):
        assert split.dtype == np.float32 and split.min() >= 0 and split.max() <= 1
    np.testing.assert_array_equal(unit(splits.test), arrays["x_test"] / np.float32(255))
    seen = np.concatenate([unit(splits.train), splits.val]) * 255
    assert sorted(map(bytes, np.rint(seen).astype(u8))) == sorted(map(bytes, arrays["x_train"]))
    again = D.load_splits(DataConfig(dataset=name))
    np.testing.assert_array_equal(again.val, splits.val)  # the same split every time


def test_data_path_may_name_the_file_or_its_folder(tmp_path):
    save(tmp_path / "cifar10.npz", cifar_arrays())
    for path in (tmp_path / "cifar10.npz", tmp_path):
        splits = D.load_splits(DataConfig(dataset="cifar10", path=str(path), n_train=8, n_val=4))
        assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 4, N_TEST)


def test_the_full_dataset_validates_on_its_last_5000_images(tmp_path, monkeypatch):
    """Like MNIST's 10,000: a standard size from the end of train (checked here on a layout
    scaled down, since the real copy is 180 MB)."""
    small = dataclasses.replace(keras_datasets.KERAS_LAYOUTS["cifar10"], n_train=N_TRAIN, n_test=N_TEST, val_size=5)
    monkeypatch.setitem(keras_datasets.KERAS_LAYOUTS, "cifar10", small)
    arrays = cifar_arrays()
    save(tmp_path / "cifar10.npz", arrays)
    splits = D.prepare(D.KerasDataset("cifar10", str(tmp_path)))
    np.testing.assert_array_equal(splits.val, arrays["x_train"][-5:] / np.float32(255))
    np.testing.assert_array_equal(unit(splits.train), arrays["x_train"][:-5] / np.float32(255))
    assert keras_datasets._CIFAR.val_size == 5_000 and keras_datasets._CIFAR.n_train == 50_000


@pytest.mark.parametrize(
    "changes, names",
    [
        ({"y_test": None}, ["found keys x_train, y_train, x_test", "expected x_train, y_train, x_test, y_test"]),
        (
            {"x_train": np.zeros((60, 32, 32, 3), np.float32)},
            ["x_train is (60, 32, 32, 3) float32", "(50000, 32, 32, 3) uint8", "(N, 32, 32, 3)"],
        ),
        ({"x_train": np.zeros((60, 32, 32), u8)}, ["x_train is (60, 32, 32) uint8", "(50000, 32, 32, 3) uint8"]),
        ({"x_test": np.zeros((20, 3, 32, 32), u8)}, ["x_test is (20, 3, 32, 32) uint8", "(10000, 32, 32, 3) uint8"]),
        ({"x_train": np.zeros((60, 28, 28, 3), u8)}, ["x_train is (60, 28, 28, 3) uint8"]),
        ({"y_train": np.zeros((59, 1), u8)}, ["y_train is (59, 1) uint8", "expected (60, 1) integer labels"]),
        ({"y_test": np.zeros((20, 1), np.float32)}, ["y_test is (20, 1) float32", "(20, 1) integer labels"]),
        ({"x_test": np.zeros((0, 32, 32, 3), u8)}, ["x_test is (0, 32, 32, 3) uint8"]),
    ],
    ids=["missing key", "floats", "grey", "channels first", "28 px", "label count", "float labels", "no images"],
)
def test_a_wrong_copy_is_refused_in_one_line(tmp_path, monkeypatch, changes, names):
    arrays: dict[str, np.ndarray | None] = {**cifar_arrays(), **changes}
    file = tmp_path / "cifar10.npz"
    save(file, {key: value for key, value in arrays.items() if value is not None})
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    message = refused(D.KerasDataset("cifar10"))
    assert message.startswith(f"{file}: not a copy of cifar10.npz")
    assert "dataset: npz" in message  # the fix for one's own images
    for part in names:
        assert part in message
    if "found keys" not in message:
        assert "keras.datasets.cifar10.load_data() with numpy.savez" in message  # the fix for a bad copy


def test_mnist_stays_strict_about_its_size(tmp_path):
    arrays = {
        "x_train": np.zeros((60, 28, 28), u8),
        "y_train": np.zeros(60, u8),
        "x_test": np.zeros((20, 28, 28), u8),
        "y_test": np.zeros(20, u8),
    }
    save(tmp_path / "mnist.npz", arrays)
    message = refused(D.KerasDataset("mnist", str(tmp_path)))
    assert "x_train is (60, 28, 28) uint8, Keras's mnist holds (60000, 28, 28) uint8" in message


def test_a_data_dir_without_the_copy_is_refused(tmp_path, monkeypatch, no_keras_cache):
    np.savez(tmp_path / "mnist.npz", x=np.zeros((1, 28, 28), u8))
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    message = refused(D.KerasDataset("cifar100"))
    assert message.startswith(f"{D.DATA_DIR_ENV}={tmp_path}: no cifar100.npz (or cifar-100-python/) in that folder")
    assert not no_keras_cache.exists()
    message = refused(D.KerasDataset("cifar10", str(tmp_path)))
    assert message.startswith(f"{tmp_path}: no cifar10.npz (or cifar-10-batches-py/) in this folder")


# --- the folder extracted from Keras's download ---------------------------------------------


def write_batches(folder: Path, name: str, per_batch: int = 12, n_test: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The python tarball's folder in miniature: pickled dicts of (n, 3072) uint8 rows
    (channels first), as the real batches hold them. Returns the images as NHWC."""
    rng = np.random.default_rng(1)
    labels = b"labels" if name == "cifar10" else b"fine_labels"
    files = (
        [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
        if name == "cifar10"
        else [("train", 5 * per_batch), ("test", n_test)]
    )
    folder.mkdir(parents=True)
    rows = {}
    for file, n in files:
        rows[file] = rng.integers(0, 256, (n, 3072), dtype=u8)
        batch = {b"data": rows[file], labels: list(range(n)), b"batch_label": b"x"}
        (folder / file).write_bytes(pickle.dumps(batch, protocol=4))
    as_images = [rows[file].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for file, _ in files]
    return np.concatenate(as_images[:-1]), as_images[-1]


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_the_extracted_folder_loads(tmp_path, monkeypatch, no_keras_cache, name, folder):
    train, test = write_batches(tmp_path / "data" / folder, name)
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path / "data"))
    splits = D.load_splits(DataConfig(dataset=name))
    assert (len(splits.train) + len(splits.val), len(splits.test)) == (60, 4)
    np.testing.assert_array_equal(unit(splits.test), test / np.float32(255))  # channels moved last
    seen = np.rint(np.concatenate([unit(splits.train), splits.val]) * 255).astype(u8)
    assert sorted(map(bytes, seen)) == sorted(map(bytes, train))
    for path in (tmp_path / "data", tmp_path / "data" / folder):  # data.path: the folder, or above it
        assert len(D.load_splits(DataConfig(dataset=name, path=str(path))).test) == 4


def test_keras_s_own_cache_is_read_without_keras(tmp_path, monkeypatch, no_keras_cache):
    folder = no_keras_cache / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    _, test = write_batches(folder, "cifar10")
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(keras_datasets, "_unreachable", lambda *a, **k: pytest.fail("probed the network"))
    raw = D.KerasDataset("cifar10").load()
    assert raw.source == str(folder)
    np.testing.assert_array_equal(raw.test, test)


def test_a_batch_that_is_not_arrays_is_never_unpickled(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    write_batches(folder, "cifar10")
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Payload()}, protocol=4))
    message = refused(D.KerasDataset("cifar10", str(folder)))
    assert message.startswith(f"{folder / 'data_batch_2'}: not a CIFAR batch (it names ")
    assert "never loaded" in message and "give a copy of cifar10.npz" in message
    assert not marker.exists()
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((3, 1024), u8)}, protocol=4))
    assert "its data is (3, 1024) uint8, expected (n, 3072) uint8" in refused(D.KerasDataset("cifar10", str(folder)))
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((3, 3072), u8)}, protocol=4))
    assert len(D.prepare(D.KerasDataset("cifar10", str(folder))).test) == 4
    (folder / "test_batch").unlink()
    assert f"{folder / 'test_batch'}: cannot read" in refused(D.KerasDataset("cifar10", str(folder)))


# --- no copy: Keras's downloader, after the probe ----------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_offline_without_a_copy_is_refused_quickly(monkeypatch, no_keras_cache, name):
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    for variable in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(variable, "")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    message = refused(D.KerasDataset(name))
    assert time.monotonic() - start < 5
    assert message.startswith(f"{name}: no local copy, and Keras cannot download it (cannot reach the HTTPS proxy")
    assert f"{name}.npz" in message and "TUNER_DATA_DIR" in message and "data.path" in message
    assert not no_keras_cache.exists()


def test_the_probe_asks_for_cifar_s_download_host(monkeypatch, no_keras_cache):
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    hosts: list[str] = []

    def unreachable(host: str = keras_datasets.DOWNLOAD_HOST) -> str:
        hosts.append(host)
        return "no network here"

    monkeypatch.setattr(keras_datasets, "_unreachable", unreachable)
    assert "(no network here)" in refused(D.KerasDataset("cifar100"))
    assert hosts == ["www.cs.toronto.edu"]  # where keras.datasets.cifar100 downloads from


def test_a_download_in_channels_first_format_is_turned_to_nhwc(monkeypatch, no_keras_cache):
    keras = pytest.importorskip("keras")
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(keras_datasets, "_unreachable", lambda *a, **k: None)
    arrays = cifar_arrays()
    nchw = {key: value.transpose(0, 3, 1, 2) if key.startswith("x") else value for key, value in arrays.items()}
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((nchw["x_train"], None), (nchw["x_test"], None)))
    monkeypatch.setattr(keras.backend, "image_data_format", lambda: "channels_first")
    raw = D.KerasDataset("cifar10").load()
    np.testing.assert_array_equal(raw.train, arrays["x_train"])
    np.testing.assert_array_equal(raw.test, arrays["x_test"])
    assert raw.val_size is None  # a subset: the seeded fraction


# --- the config ---------------------------------------------------------------------------------


def test_the_config_names_cifar():
    assert DataConfig(dataset="cifar10").dataset == "cifar10"
    assert DataConfig(dataset="cifar100", path="/data/cifar100.npz").path == "/data/cifar100.npz"
    with pytest.raises(ValidationError, match="'cifar10', 'cifar100'"):
        DataConfig(dataset="cifar")
    assert isinstance(D.dataset_for(DataConfig(dataset="cifar100")), D.KerasDataset)
