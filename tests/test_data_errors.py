"""Bad data and bad backends, one line each: the message names the file, field or variable, what
was found and the fix; nothing is trained on, nothing created, and TensorFlow says nothing.

Most checks call :mod:`tuner.vae.data` directly (fast); the CLI checks run `python -m tuner` in
a subprocess with a fake HOME, where stderr is exactly what a user sees.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import refused, tiny_study_dict
from tuner.config import DataConfig, TrainConfig, validate
from tuner.errors import ConfigError
from tuner.vae import data as D
from tuner.vae.data import keras_datasets

REPO = Path(__file__).resolve().parents[1]
u8 = np.uint8


def keras_copy(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    """Arrays shaped like Keras's mnist.npz (zeros), with ``changes`` applied (None drops one)."""
    arrays: dict[str, np.ndarray | None] = {key: np.zeros(shape, u8) for key, shape in D.KERAS_LAYOUT.items()}
    arrays.update(changes)
    return {key: value for key, value in arrays.items() if value is not None}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


# --- mnist / fashion_mnist: a local copy must be Keras's file ------------------------------


@pytest.mark.parametrize(
    "arrays, names",
    [
        ({"x": np.zeros((600, 28, 28), u8)}, ["found keys x", "expected x_train, y_train, x_test, y_test"]),
        ({"images": np.zeros((60, 28, 28), u8), "labels": np.zeros(60, u8)}, ["found keys images, labels"]),
        (keras_copy(y_train=None, y_test=None), ["found keys x_train, x_test", "y_train"]),
        (keras_copy(x_train=np.zeros((600, 32, 32), u8)), ["x_train is (600, 32, 32) uint8", "(60000, 28, 28) uint8"]),
        (keras_copy(x_test=np.zeros((10_000, 28, 28), np.float32)), ["x_test is (10000, 28, 28) float32"]),
        (keras_copy(y_train=np.zeros(60_000, np.float64)), ["y_train is (60000,) float64", "integer labels"]),
    ],
    ids=["x only", "images+labels", "no labels", "32x32", "float test", "float labels"],
)
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_a_local_copy_in_another_layout_is_refused(tmp_path, arrays, names, name):
    file = tmp_path / "mine.npz"
    np.savez(file, **arrays)
    message = refused(D.KerasDataset(name, str(file)))
    assert message.startswith(f"{file}: not a copy of {name}.npz")
    assert "dataset: npz" in message
    for part in names:
        assert part in message


def test_a_wrong_copy_in_the_data_dir_is_refused_too(tmp_path, monkeypatch):
    np.savez(tmp_path / "mnist.npz", x=np.zeros((10, 28, 28), u8))
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    message = refused(D.KerasDataset("mnist"))
    assert str(tmp_path / "mnist.npz") in message and "found keys x" in message


def test_a_folder_as_path_must_hold_the_file(tmp_path):
    assert f"{tmp_path}: no mnist.npz in this folder" in refused(D.KerasDataset("mnist", str(tmp_path)))
    assert "not found" in refused(D.KerasDataset("mnist", str(tmp_path / "nowhere")))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("", "TUNER_DATA_DIR is set but empty; unset it or give the folder holding mnist.npz"),
        ("   ", "TUNER_DATA_DIR is set but empty"),
        ("{tmp}/missing", "TUNER_DATA_DIR={tmp}/missing: folder not found"),
        ("{tmp}/afile.npz", "TUNER_DATA_DIR={tmp}/afile.npz: is a file, not a folder"),
        ("{tmp}", "TUNER_DATA_DIR={tmp}: no mnist.npz in that folder"),
    ],
    ids=["empty", "blank", "missing folder", "a file", "folder without the dataset"],
)
def test_data_dir_variable_is_checked(tmp_path, monkeypatch, value, expected):
    (tmp_path / "afile.npz").write_bytes(b"PK\x05\x06" + bytes(18))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv(D.DATA_DIR_ENV, value.replace("{tmp}", str(tmp_path)))
    assert expected.replace("{tmp}", str(tmp_path)) in refused(D.KerasDataset("mnist"))
    assert list(home.iterdir()) == []  # no download tried: Keras would create ~/.keras


def test_no_network_refuses_quickly_before_keras(tmp_path, monkeypatch):
    """The probe runs before Keras loads: a closed proxy port answers at once, offline or not."""
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    message = refused(D.KerasDataset("fashion_mnist"))
    assert message.startswith(
        "fashion_mnist: no local copy, and Keras cannot download it (cannot reach the HTTPS proxy"
    )
    assert "TUNER_DATA_DIR" in message and "data.path" in message
    assert not (tmp_path / "keras_home").exists()


def test_a_failed_download_is_one_line_and_leaves_no_folders(tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras_datasets, "_unreachable", lambda *args, **kwargs: None)

    def failing_download() -> None:
        (tmp_path / "datasets").mkdir()  # what keras.utils.get_file does first
        raise Exception("URL fetch failure on https://example/mnist.npz: None -- timed out\nsecond line")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", failing_download)
    before = socket.getdefaulttimeout()
    message = refused(D.KerasDataset("mnist"))
    assert message.startswith("mnist: cannot download it with Keras (URL fetch failure") and "TUNER_DATA_DIR" in message
    assert not (tmp_path / "datasets").exists()
    assert socket.getdefaulttimeout() == before


# --- files that are not .npz archives ---------------------------------------------------------


def _zip_damaged(path: Path) -> None:
    np.savez(path, x=np.zeros((10, 8, 8), u8))
    path.write_bytes(path.read_bytes()[:120])


def _member_damaged(path: Path) -> None:
    np.savez(path, x=np.arange(640, dtype=u8).reshape(10, 8, 8))
    data = bytearray(path.read_bytes())
    data[100:110] = b"\xff" * 10
    path.write_bytes(bytes(data))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _png(path: Path) -> None:
    Image.new("L", (8, 8)).save(path, format="PNG")


FILES: list[tuple[str, Callable[[Path], object], str]] = [
    ("text", lambda p: p.write_text("hello\n" * 20), "it is a text file"),
    (".npy renamed", lambda p: p.write_bytes(_npy(np.zeros((10, 8, 8), u8))), "saved by numpy.save (.npy)"),
    ("gzip", lambda p: p.write_bytes(gzip.compress(b"x" * 100)), "gzip-compressed"),
    ("png", _png, "use dataset: folder"),
    ("pickle", lambda p: p.write_bytes(pickle.dumps({"x": 1})), "pickles can run code and are never loaded"),
    ("binary", lambda p: p.write_bytes(bytes(range(256))), "not a NumPy .npz archive"),
    ("empty", lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    ("truncated zip", _zip_damaged, "a damaged zip archive"),
    ("damaged member", _member_damaged, "array 'x' cannot be read"),
    ("folder", lambda p: p.mkdir(), "is a folder, not a file; give the .npz file itself"),
    ("pipe", lambda p: os.mkfifo(p), "not a regular file"),
]


@pytest.mark.parametrize("make, expected", [row[1:] for row in FILES], ids=[row[0] for row in FILES])
def test_what_is_not_an_npz_archive_is_named(tmp_path, make, expected):
    path = tmp_path / "data.npz"
    make(path)
    message = refused(D.NpzDataset(str(path)))
    assert message.startswith(f"{path}: ") and expected in message
    assert "allow_pickle" not in message and "context manager" not in message


def test_a_device_is_not_a_file():
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    assert refused(D.NpzDataset("/dev/null")).startswith("/dev/null: not a regular file")
    assert "not a regular file" in refused(D.KerasDataset("mnist", "/dev/null"))


# --- arrays that are not images ---------------------------------------------------------------

ARRAYS: list[tuple[str, dict[str, np.ndarray], list[str]]] = [
    ("object", {"x": np.array([np.zeros(3), "a"], dtype=object)}, ["array 'x' holds Python objects", "never loaded"]),
    ("strings", {"x": np.full((10, 8, 8), "a")}, ["array 'x' holds strings (dtype <U1)"]),
    ("complex", {"x": np.zeros((10, 8, 8), complex)}, ["complex numbers (dtype complex128)"]),
    ("1-D", {"x": np.zeros(100, u8)}, ["array 'x' is 1-D with shape (100,)"]),
    ("5-D", {"x": np.zeros((2, 3, 4, 5, 1), u8)}, ["is 5-D with shape (2, 3, 4, 5, 1)"]),
    ("flattened", {"x": np.zeros((10, 784), u8)}, ["x.reshape(-1, 28, 28)"]),
    ("channels first", {"x": np.zeros((10, 3, 8, 8), u8)}, ["has 8 channels", "x.transpose(0, 2, 3, 1)"]),
    ("no images", {"x": np.zeros((0, 8, 8), u8)}, ["array 'x' holds no images (shape (0, 8, 8))"]),
    ("size 0", {"images": np.zeros((10, 0, 8), u8)}, ["array 'images' holds images of size 0"]),
    ("NaN", {"x": np.full((10, 8, 8), np.nan, np.float32)}, ["640 NaN pixel values", "finite"]),
    ("inf", {"x": np.where(np.arange(640).reshape(10, 8, 8) < 3, np.inf, 0.5)}, ["3 infinite pixel values"]),
    ("out of range", {"x": np.full((10, 8, 8), 255.0)}, ["from 255 to 255", "divide 0-255 values by 255"]),
    ("bool", {"x": np.zeros((10, 8, 8), bool)}, ["dtype bool", "x.astype(np.uint8) * 255"]),
    ("int16 over 255", {"x": np.full((10, 8, 8), 300, np.int16)}, ["dtype int16", "values 300 to 300"]),
    ("int64 pixels", {"x": np.full((10, 8, 8), 7, np.int64)}, ["dtype int64", "convert with x.astype(np.uint8)"]),
    ("bad test array", {"x_train": np.zeros((10, 8, 8), u8), "x_test": np.zeros(5, u8)}, ["array 'x_test' is 1-D"]),
    (
        "test shape",
        {"x_train": np.zeros((10, 8, 8), u8), "x_test": np.zeros((5, 9, 9), u8)},
        ["test images (x_test) are (9, 9, 1)"],
    ),
    ("no image key", {"y": np.zeros(3), "labels": np.zeros(3)}, ["no image array; found keys y, labels"]),
    ("one image", {"x": np.zeros((1, 8, 8), u8)}, ["too few images (1)"]),
]


@pytest.mark.parametrize("arrays, names", [row[1:] for row in ARRAYS], ids=[row[0] for row in ARRAYS])
def test_arrays_that_are_not_images_are_named(tmp_path, arrays, names):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    message = refused(D.NpzDataset(str(path)))
    assert message.startswith(f"{path}: ")
    for part in names:
        assert part in message


def test_a_train_split_smaller_than_a_batch_loads(tmp_path):
    """Smaller than a batch is one batch (tuner/vae/batches.py): not an error."""
    np.savez(tmp_path / "few.npz", x=np.zeros((12, 8, 8), u8))
    splits = D.load_splits(DataConfig(dataset="npz", path=str(tmp_path / "few.npz")))
    assert len(splits.train) == 9 and len(splits.val) == 1 and len(splits.test) == 2


# --- folders of images ------------------------------------------------------------------------


def _images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    for i, size in enumerate(sizes):
        Image.new("L", size, i * 9).save(folder / f"im{i}.png")


def _images_and_a_corrupt_jpeg(folder: Path) -> None:
    _images(folder, [(8, 8)] * 4)
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xffno")


FOLDERS: list[tuple[str, Callable[[Path], object], str]] = [
    ("non-images", lambda f: [(f / f"n{i}.txt").write_text("x") for i in range(3)], "found 3 other files, e.g. n0.txt"),
    ("empty", lambda f: None, "no PNG or JPEG images found (.png, .jpg, .jpeg); the folder is empty"),
    (
        "corrupt",
        _images_and_a_corrupt_jpeg,
        "bad.jpg: cannot read image: not a PNG or JPEG image",
    ),
    ("16-bit", lambda f: Image.fromarray(np.zeros((8, 8), np.uint16)).save(f / "deep.png"), "mode I;16"),
    ("mixed sizes", lambda f: _images(f, [(8, 8), (9, 7)] * 3), "(e.g. im0.png is 8×8, im1.png 7×9)"),
]


@pytest.mark.parametrize("fill, expected", [row[1:] for row in FOLDERS], ids=[row[0] for row in FOLDERS])
def test_folder_problems_are_named(tmp_path, fill, expected):
    folder = tmp_path / "images"
    folder.mkdir()
    fill(folder)
    assert expected in refused(D.ImageFolder(str(folder)))


def test_a_file_given_as_folder(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 8, 8), u8))
    message = refused(D.ImageFolder(str(tmp_path / "data.npz")))
    assert "is a file, not a folder" in message and "dataset: npz" in message


def test_a_subfolder_named_like_an_image_is_skipped(tmp_path):
    (tmp_path / "album.png").mkdir()
    _images(tmp_path, [(8, 8)] * 6)
    assert D.prepare(D.ImageFolder(str(tmp_path))).image_shape == (8, 8, 1)


# --- the data section -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section, expected",
    [
        (
            {"dataset": "folder", "path": "x", "size": 28},
            "f.yaml: data.size: must be [height, width], e.g. size: [28, 28]",
        ),
        ({"dataset": "folder", "path": "x", "size": [28]}, "data.size: must be [height, width]: two numbers"),
        ({"dataset": "folder", "path": "x", "size": "28x28"}, "data.size: must be [height, width]"),
        ({"dataset": "npz", "path": "x.npz", "size": [8, 8]}, "data.size: applies only to dataset 'folder'"),
        ({"dataset": "mnist", "color": "rgb"}, "data.color: applies only to dataset 'folder', not 'mnist'"),
        ({"dataset": "npz", "path": " "}, "data.path: empty"),
        ({"dataset": "mnist", "path": ""}, "data.path: empty"),
        ({"dataset": "npz", "path": "a\x00b.npz"}, "data.path: contains a NUL character"),
    ],
    ids=["scalar size", "one side", "size text", "size of npz", "color of mnist", "blank path", "empty path", "NUL"],
)
def test_data_section_hints(section, expected):
    with pytest.raises(ConfigError) as info:
        validate(TrainConfig, {"data": section}, "f.yaml")
    assert expected in str(info.value) and "\n" not in str(info.value)


# --- the CLI: one line on stderr, nothing created, no TensorFlow noise ------------------------


def run_cli(tmp_path: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    for name in ("TUNER_STORAGE", "TUNER_ARTIFACTS", "KERAS_HOME", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL"):
        full.pop(name, None)  # TensorFlow's C++ lines must be silenced by tuner itself
    for name, value in env.items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    return subprocess.run(
        [sys.executable, "-m", "tuner", *args], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120
    )


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *names: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # no TensorFlow / absl lines
    assert "Traceback" not in result.stdout + result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def study_file(tmp_path: Path, **data: object) -> str:
    """A tiny study in ``tmp_path``, and the fake HOME the CLI runs with (both before the snapshot)."""
    (tmp_path / "home").mkdir(exist_ok=True)
    content = tiny_study_dict("errs")
    content["data"] = {**content["data"], **data}
    (tmp_path / "errs.yaml").write_text(yaml.safe_dump(content))
    return "errs.yaml"


@pytest.fixture
def mnist_dir() -> str:
    location = os.environ.get(D.DATA_DIR_ENV)
    if not location or not (Path(location) / "mnist.npz").is_file():
        pytest.skip(f"set {D.DATA_DIR_ENV} to a folder holding mnist.npz")
    return location


def test_cli_refuses_random_images_as_mnist(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rand.npz", x=rng.integers(0, 256, (600, 28, 28), dtype=u8))
    study = study_file(tmp_path, dataset="mnist", path=str(tmp_path / "rand.npz"))
    before = snapshot(tmp_path)
    result = run_cli(tmp_path, "run", study)
    assert_one_line(result, 1, str(tmp_path / "rand.npz"), "found keys x", "x_train, y_train, x_test, y_test")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "env, names",
    [
        ({"TUNER_DATA_DIR": ""}, ["TUNER_DATA_DIR is set but empty; unset it or give the folder holding mnist.npz"]),
        ({"TUNER_DATA_DIR": None, "https_proxy": "http://127.0.0.1:{port}"}, ["cannot reach the HTTPS proxy"]),
    ],
    ids=["empty TUNER_DATA_DIR", "download impossible"],
)
def test_cli_without_local_data_creates_nothing(tmp_path, env, names):
    env = {k: v.replace("{port}", str(closed_port())) if v else v for k, v in env.items()}
    study = study_file(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli(tmp_path, "run", study, no_proxy="", NO_PROXY="", **env)
    assert_one_line(result, 1, *names)
    assert snapshot(tmp_path) == before  # no storage/, and no home/.keras


@pytest.mark.parametrize("value", ["garbage", "torch", ""])
def test_cli_refuses_a_backend_it_does_not_run_on(tmp_path, mnist_dir, value):
    study = study_file(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli(tmp_path, "run", study, KERAS_BACKEND=value, TUNER_DATA_DIR=mnist_dir)
    expected = f"KERAS_BACKEND={value}: tuner runs on tensorflow or jax" if value else "KERAS_BACKEND is set but empty"
    assert_one_line(result, 2, expected)
    assert snapshot(tmp_path) == before


# Runs `tuner` with `jax` hidden from the import system, as on a machine where it is not installed.
WITHOUT_JAX = """
import runpy, sys
class NoJax:
    def find_spec(self, name, path=None, target=None):
        if name == "jax" or name.startswith("jax."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoJax())
sys.argv = ["tuner", *sys.argv[1:]]
runpy.run_module("tuner", run_name="__main__")
"""


def test_cli_names_a_backend_that_is_not_installed(tmp_path, mnist_dir):
    study = study_file(tmp_path)
    before = snapshot(tmp_path)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "KERAS_BACKEND": "jax",
        "TUNER_DATA_DIR": mnist_dir,
    }
    env.pop("TUNER_STORAGE", None)
    for args in (["run", study], ["--backend", "jax", "run", study]):
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_JAX, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_one_line(result, 2, "KERAS_BACKEND=jax: jax is not installed", "pip install -e '.[jax]'")
    assert snapshot(tmp_path) == before  # no home/.keras: Keras was not imported


def test_tensorflow_python_warnings_are_silenced_but_errors_kept(tmp_path):
    """What a study of more than five trials printed: TensorFlow's retracing warning."""
    script = (
        "from tuner.vae.backend import load_keras\n"
        "load_keras()\n"
        "import tensorflow as tf\n"
        "from absl import logging as absl_logging\n"
        "tf.get_logger().warning('5 out of the last 16 calls to <function f> triggered tf.function retracing')\n"
        "absl_logging.warning('an absl warning')\n"
        "tf.get_logger().error('an error is kept')\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("KERAS_BACKEND", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "retracing" not in result.stderr and "absl warning" not in result.stderr
    assert "an error is kept" in result.stderr
