"""Datasets: where images come from, and the fixed train / validation / test split.

A dataset is a small object with ``get_config``/``from_config`` whose :meth:`load` returns
raw images. :func:`prepare` turns them into float32 NHWC arrays in [0, 1] with a split that
is the same for every trial of a study, so validation ELBOs are comparable.

What ``data.path`` means depends on the dataset, and a file that does not match is refused
(one :class:`DataError` line naming the file, what was found and what was expected), never
trained on:

* ``mnist`` / ``fashion_mnist``: a copy of Keras's file (``x_train``, ``y_train``, ``x_test``,
  ``y_test``: 60,000 + 10,000 images of 28×28 uint8), or the folder holding ``<name>.npz``.
  Without ``path``, the folder named by ``TUNER_DATA_DIR``, else Keras's downloader.
* ``npz``: the user's own ``.npz`` (``numpy.savez``): ``x_train`` [+ ``x_test``], or ``x`` or
  ``images``.
* ``folder``: a folder of PNG/JPEG images.

Files are checked before numpy reads them, because numpy's own messages mislead: a text file
gets "contains pickled (object) data … allow_pickle=", which advises unsafe loading, and a
``.npy`` renamed ``.npz`` a context-manager error. Object arrays are never unpickled.

Without a local copy, the download host (or the HTTPS proxy) is probed, with a time limit,
before Keras loads: offline, the refusal is one line and creates nothing, where Keras would
make ``~/.keras``, print TensorFlow's start-up lines, and could wait on the network forever.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import stat
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
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

# What keras.datasets.mnist / fashion_mnist .load_data() return: a local copy must hold these.
KERAS_LAYOUT: dict[str, tuple[int, ...]] = {
    "x_train": (60_000, 28, 28),
    "y_train": (60_000,),
    "x_test": (10_000, 28, 28),
    "y_test": (10_000,),
}
# Where Keras downloads from; probed first, because urllib would wait without a time limit.
DOWNLOAD_HOST = "storage.googleapis.com"
PROBE_TIMEOUT_S = 5.0
DOWNLOAD_TIMEOUT_S = 60.0
_FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
# PIL modes of more than 8 bits per channel: convert("L") would clip them to white.
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


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


# --- reading .npz files ---------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _regular_file(path: Path, fix: str) -> None:
    """Refuse a path that is not a non-empty regular file, saying what it is instead."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: file not found; {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or _reason(exc)}); {fix}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{path}: is a folder, not a file; give the .npz file itself ({fix})")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file (a device, pipe or socket); {fix}")
    if info.st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); {fix}")


def _what_is(head: bytes) -> tuple[str, str]:
    """(what a file that is not a zip archive holds, judged from its first bytes; the fix)."""
    savez = "write the arrays with numpy.savez(FILE, x=images)"
    if head.startswith(b"\x93NUMPY"):
        return "a single array saved by numpy.save (.npy)", savez
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        kind = "PNG" if head.startswith(b"\x89PNG") else "JPEG"
        return f"a {kind} image", "for a folder of PNG/JPEG images use dataset: folder"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data", "decompress it, or " + savez
    if head.startswith(b"\x80") and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle", "pickles can run code and are never loaded; " + savez
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file", savez
    if b"\x00" not in head:
        try:
            head[:-4].decode("utf-8")  # a multi-byte character may be cut at the end
            return "a text file", savez
        except UnicodeDecodeError:
            pass
    return "binary data of an unknown kind", savez


@contextlib.contextmanager
def _npz_archive(path: Path, fix: str) -> Iterator[Any]:
    """Open an .npz archive (``allow_pickle=False``) after checking the file is one."""
    _regular_file(path, fix)
    try:
        with path.open("rb") as file:
            head = file.read(64)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or _reason(exc)}); {fix}") from None
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what, how = _what_is(head)
        raise DataError(f"{path}: not a readable .npz file: it is {what}, not a NumPy .npz archive; {how}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises several types: say which file
        raise DataError(
            f"{path}: not a readable .npz file: a damaged zip archive ({_reason(exc)}); write it again with numpy.savez"
        ) from None
    with archive:
        yield archive


def _read_array(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        value = archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"{path}: array {key!r} holds Python objects (dtype object), which are never loaded because "
                "unpickling can run code; save it as a uint8 or float array"
            ) from None
        raise DataError(f"{path}: array {key!r} cannot be read ({_reason(exc)}); write the file again") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt member: say which file and array
        raise DataError(
            f"{path}: array {key!r} cannot be read ({_reason(exc)}); the file may be truncated: write it again"
        ) from None
    if not isinstance(value, np.ndarray):
        raise DataError(f"{path}: member {key!r} is not a NumPy array; write the file with numpy.savez")
    return value


def _keys(found: list[str]) -> str:
    if not found:
        return "none"
    shown = ", ".join(found[:8])
    return shown + (f" and {len(found) - 8} more" if len(found) > 8 else "")


def _npz_images(path: Path, fix: str) -> RawImages:
    """The project's own layout: ``x_train`` [+ ``x_test``], or ``x``, or ``images``."""
    with _npz_archive(path, fix) as archive:
        found = list(archive.files)
        if "x_train" in found:
            train_name, test_name = "x_train", "x_test" if "x_test" in found else None
        else:
            train_name = next((key for key in ("x", "images") if key in found), "")
            test_name = None
            if not train_name:
                raise DataError(
                    f"{path}: no image array; found keys {_keys(found)}, expected x_train (with x_test: the Keras "
                    "layout), x or images"
                )
        train = _read_array(archive, train_name, path)
        test = _read_array(archive, test_name, path) if test_name else None
    return RawImages(train, test, source=str(path), train_name=train_name, test_name=test_name)


# --- Keras's datasets -----------------------------------------------------------------------


def _keras_home() -> Path:
    """The folder Keras caches downloads in (as ``keras.utils.get_file`` picks it)."""
    if "KERAS_HOME" in os.environ:
        base = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        home = Path("~").expanduser()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    if base.exists() and not os.access(base, os.W_OK):
        base = Path("/tmp") / ".keras"
    return base


def _unreachable(host: str = DOWNLOAD_HOST, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a connection to ``host`` (or the HTTPS proxy) cannot open, or None when it can.

    Bounded in time, name resolution included (it runs in a thread): Keras's download has no
    time limit of its own and would hang on a network that drops packets."""
    port, what = 443, host
    proxy = urllib.request.getproxies().get("https")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
            what = f"the HTTPS proxy {host}:{port}"
    failure: list[str] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as exc:
            failure.append(exc.strerror or _reason(exc))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 1)
    if thread.is_alive():
        return f"no answer from {what} within {timeout_s:.0f} s"
    return f"cannot reach {what}: {failure[0]}" if failure else None


class KerasDataset(Dataset):
    """``mnist`` or ``fashion_mnist``: ``data.path`` (a copy of Keras's ``<name>.npz`` or its
    folder), else ``<name>.npz`` in the folder named by ``TUNER_DATA_DIR``, else Keras's own
    downloader. A local file must be the real dataset (keys and shapes of Keras's file)."""

    kind = "keras"
    NAMES: ClassVar[tuple[str, ...]] = ("mnist", "fashion_mnist")

    def __init__(self, name: str, path: str | None = None) -> None:
        if name not in self.NAMES:
            raise DataError(f"dataset: unknown dataset {name!r}; choose one of {list(self.NAMES)}, or give a path")
        self.name = name
        self.path = path

    @property
    def _file_name(self) -> str:
        return f"{self.name}.npz"

    def _local_file(self) -> Path | None:
        name = self._file_name
        if self.path is not None:
            if not self.path.strip():
                raise DataError(f"data.path: empty; remove it, or give a copy of {name} or the folder holding it")
            path = Path(self.path).expanduser()
            if not path.exists():
                raise DataError(
                    f"{path}: not found; data.path of dataset {self.name} is a copy of {name} (keras.datasets "
                    "layout) or the folder holding it"
                )
            if not path.is_dir():
                return path  # the file itself: checked when read
            if not (path / name).exists():
                raise DataError(
                    f"{path}: no {name} in this folder; data.path of dataset {self.name} is a copy of {name} "
                    f"(keras.datasets layout) or the folder holding it"
                )
            return path / name
        location = os.environ.get(DATA_DIR_ENV)
        if location is None:
            return None
        if not location.strip():
            raise DataError(f"{DATA_DIR_ENV} is set but empty; unset it or give the folder holding {name}")
        folder = Path(location).expanduser()
        if not folder.exists():
            raise DataError(
                f"{DATA_DIR_ENV}={location}: folder not found; give the folder holding {name}, or unset "
                f"{DATA_DIR_ENV} to download {self.name} with Keras"
            )
        if not folder.is_dir():
            raise DataError(
                f"{DATA_DIR_ENV}={location}: is a file, not a folder; set it to the folder holding {name} "
                f"(data.path may name the file itself)"
            )
        if not (folder / name).exists():
            raise DataError(
                f"{DATA_DIR_ENV}={location}: no {name} in that folder; put {name} (keras.datasets layout) there, "
                f"or unset {DATA_DIR_ENV} to download it with Keras"
            )
        return folder / name

    def _read_copy(self, file: Path) -> RawImages:
        fix = f"give a copy of {self._file_name} (keras.datasets layout); for your own images use dataset: npz"
        with _npz_archive(file, fix) as archive:
            found = list(archive.files)
            if any(key not in found for key in KERAS_LAYOUT):
                raise DataError(
                    f"{file}: not a copy of {self._file_name}: found keys {_keys(found)}, expected "
                    f"{', '.join(KERAS_LAYOUT)} (the keras.datasets layout); for your own images use dataset: npz"
                )
            arrays = {key: _read_array(archive, key, file) for key in KERAS_LAYOUT}
        for key, shape in KERAS_LAYOUT.items():
            array = arrays[key]
            images = key.startswith("x_")
            if array.shape != shape or not (array.dtype == np.uint8 if images else array.dtype.kind in "iu"):
                wanted = f"{shape} uint8" if images else f"{shape} integer labels"
                raise DataError(
                    f"{file}: not a copy of {self._file_name}: {key} is {array.shape} {array.dtype}, Keras's "
                    f"{self.name} holds {wanted}; for your own images use dataset: npz"
                )
        return RawImages(
            arrays["x_train"], arrays["x_test"], source=str(file), train_name="x_train", test_name="x_test"
        )

    def _cache_files(self) -> list[Path]:
        datasets = _keras_home() / "datasets"
        if self.name == "mnist":
            return [datasets / "mnist.npz"]
        return [datasets / "fashion-mnist" / name for name in _FASHION_FILES]

    def _download(self) -> RawImages:
        fix = (
            f"without internet, put {self._file_name} (keras.datasets layout) in a folder and set {DATA_DIR_ENV} "
            "to it, or data.path to the file"
        )
        cached = self._cache_files()
        if not all(file.is_file() for file in cached):
            reason = _unreachable()
            if reason:
                # Before Keras loads: nothing is created (no ~/.keras) and TensorFlow prints nothing.
                raise DataError(f"{self.name}: no local copy, and Keras cannot download it ({reason}); {fix}")
        from tuner.vae.backend import load_keras

        keras = load_keras()
        new_folders = [folder for folder in _parents(cached) if not folder.exists()]
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urllib's download has no limit of its own
        try:
            (x_train, _), (x_test, _) = getattr(keras.datasets, self.name).load_data()
        except Exception as exc:  # noqa: BLE001 - no network, a proxy, a truncated download...
            for folder in reversed(new_folders):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: what Keras made for the failed download
            raise DataError(f"{self.name}: cannot download it with Keras ({_reason(exc)}); {fix}") from None
        finally:
            socket.setdefaulttimeout(previous)
        return RawImages(x_train, x_test, source=self.name, train_name="x_train", test_name="x_test")

    def load(self) -> RawImages:
        local = self._local_file()
        raw = self._read_copy(local) if local is not None else self._download()
        # The standard VAE split of both datasets: the last 10,000 training images validate.
        raw.val_size = 10_000 if len(raw.train) == 60_000 else None
        return raw

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path}


def _parents(files: list[Path]) -> list[Path]:
    """The folders above ``files`` inside Keras's home, outermost first."""
    home = _keras_home()
    folders: list[Path] = []
    for file in files:
        for folder in reversed(file.parents):
            if folder != home and home in folder.parents and folder not in folders:
                folders.append(folder)
    return folders


class NpzDataset(Dataset):
    """A user's own ``.npz`` file: Keras layout (x_train, x_test) or a single x / images array."""

    kind = "npz"

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> RawImages:
        if not self.path.strip():
            raise DataError("data.path: empty; give the .npz file of dataset npz")
        path = Path(self.path).expanduser()
        return _npz_images(path, "data.path of dataset npz is a .npz file with an x_train, x or images array")

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path}


# --- folders of images ----------------------------------------------------------------------


class ImageFolder(Dataset):
    """A folder of PNG/JPEG images (searched recursively), resized to ``size`` = [height,
    width] when given; without ``size`` all images must share one size. ``color``: ``auto``
    (the default) loads the folder as RGB when any image has colour (R, G, B not all equal),
    else as grey; ``grayscale`` or ``rgb`` force one. Other files are ignored; an image that
    cannot be decoded, or has more than 8 bits per channel, is refused by name."""

    kind = "folder"

    def __init__(self, path: str, size: list[int] | None = None, color: str = "auto") -> None:
        if color not in ("auto", "grayscale", "rgb"):
            raise DataError(f"data.color: must be 'auto', 'grayscale' or 'rgb', got {color!r}")
        self.path = path
        self.size = list(size) if size else None
        self.color = color

    def _files(self, folder: Path) -> list[Path]:
        if not self.path.strip():
            raise DataError("data.path: empty; give the folder of PNG/JPEG images of dataset folder")
        if not folder.exists():
            raise DataError(f"{folder}: folder not found; check data.path (dataset folder reads a folder of images)")
        if not folder.is_dir():
            raise DataError(
                f"{folder}: is a file, not a folder; dataset folder reads a folder of PNG/JPEG images "
                "(for an .npz file use dataset: npz)"
            )
        entries = sorted(p for p in folder.rglob("*") if p.is_file())
        files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            found = f"found {len(entries)} other files, e.g. {entries[0].name}" if entries else "the folder is empty"
            raise DataError(f"{folder}: no PNG or JPEG images found (.png, .jpg, .jpeg); {found}")
        return files

    def _read(self, file: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(file) as image:
                if image.mode in _WIDE_MODES:
                    raise DataError(
                        f"{file}: an image with more than 8 bits per channel (mode {image.mode}); save the images "
                        "as 8-bit PNG or JPEG"
                    )
                image = image.convert("L" if self.color == "grayscale" else "RGB")  # auto: decided later
                if self.size:
                    image = image.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, DecompressionBombError...
            reason = "not a PNG or JPEG image" if type(exc).__name__ == "UnidentifiedImageError" else _reason(exc)
            raise DataError(f"{file}: cannot read image: {reason}; remove or replace the file") from None

    def load(self) -> RawImages:
        folder = Path(self.path).expanduser()
        files = self._files(folder)
        images = [self._read(file) for file in files]
        first_of_size: dict[tuple[int, ...], Path] = {}
        for file, image in zip(files, images, strict=True):
            first_of_size.setdefault(image.shape[:2], file)
        if len(first_of_size) > 1:
            (size_a, file_a), (size_b, file_b) = list(first_of_size.items())[:2]
            raise DataError(
                f"{folder}: images have {len(first_of_size)} different sizes; set data.size: [height, width] to "
                f"resize them (e.g. {file_a.name} is {size_a[0]}×{size_a[1]}, {file_b.name} {size_b[0]}×{size_b[1]})"
            )
        stacked = np.stack(images)
        if self.color == "auto" and _all_grey(stacked):
            stacked = stacked[..., 0]  # what convert("L") gives for R = G = B
        return RawImages(stacked, None, source=str(folder))

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "color": self.color}


def _all_grey(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


# --- checking and splitting -----------------------------------------------------------------

_EXPECTED_SHAPE = "images must have shape (N, H, W) or (N, H, W, C) with C = 1 (grey) or 3 (RGB)"
_EXPECTED_VALUES = "images must be uint8 or float in [0, 1]"


def to_unit_float(images: np.ndarray, source: str, *, array: str | None = None) -> np.ndarray:
    """Validate and convert images to float32 NHWC in [0, 1].

    Args:
        images: (N, H, W) or (N, H, W, 1 | 3), uint8 or float in [0, 1].
        source: the file or folder, named first in every message.
        array: the array's name in the file (``x_train``), named in the messages.

    Raises:
        DataError: one line saying what is wrong (dtype, shape, no images, NaN / inf, range).
    """
    images = np.asarray(images)
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
        return images.astype(np.float32) / 255.0
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
    raw = dataset.load()
    source = raw.source or str(getattr(dataset, "path", None) or getattr(dataset, "name", dataset.kind))
    train = to_unit_float(raw.train, source, array=raw.train_name)
    rng = np.random.default_rng(split_seed)
    if raw.test is None:
        # No test set shipped: hold one out first, with the same fraction as validation.
        order = rng.permutation(len(train))
        n_test = max(1, int(len(train) * val_fraction))
        test, train = train[order[:n_test]], train[order[n_test:]]
        minimum = 3
    else:
        test = to_unit_float(raw.test, source, array=raw.test_name)
        if test.shape[1:] != train.shape[1:]:
            raise DataError(
                f"{source}: test images ({raw.test_name or 'test'}) are {test.shape[1:]} but training images "
                f"({raw.train_name or 'train'}) are {train.shape[1:]}; both must share one size and channel count"
            )
        minimum = 2
    if raw.val_size is not None:
        train, val = train[: -raw.val_size], train[-raw.val_size :]
    else:
        order = rng.permutation(len(train))
        n_hold = max(1, int(len(train) * val_fraction))
        val, train = train[order[:n_hold]], train[order[n_hold:]]
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
