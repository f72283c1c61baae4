"""``mnist``, ``fashion_mnist``, ``cifar10`` and ``cifar100``: a local copy in Keras's layout,
or Keras's downloader after a time-limited probe of the download host."""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import stat
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tuner.errors import DataError, reason
from tuner.vae.data._base import Dataset, RawImages
from tuner.vae.data._npz_files import _keys, _npz_archive, _read_array

DATA_DIR_ENV = "TUNER_DATA_DIR"

# Where Keras downloads from; probed first, because urllib would wait without a time limit.
DOWNLOAD_HOST = "storage.googleapis.com"  # mnist, fashion_mnist
CIFAR_HOST = "www.cs.toronto.edu"  # cifar10, cifar100 (Keras fetches the tarballs from there)
PROBE_TIMEOUT_S = 5.0
DOWNLOAD_TIMEOUT_S = 60.0
_FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


@dataclass(frozen=True)
class KerasLayout:
    """What ``keras.datasets.<name>.load_data()`` returns, which a local copy must match.

    ``val_size``: the standard validation split, the last ``val_size`` images of a full
    training set. ``subsets``: whether a copy may hold fewer images (N ≤ the full count, same
    image and label shapes); such a copy is split by the seeded ``data.val_fraction``."""

    n_train: int
    n_test: int
    image: tuple[int, ...]  # one image
    label: tuple[int, ...]  # one label: () for a flat label vector, (1,) for a column
    val_size: int
    subsets: bool
    host: str

    def shapes(self, n_train: int | None = None, n_test: int | None = None) -> dict[str, tuple[int, ...]]:
        """The four arrays' shapes, for the full dataset or ``n_train`` + ``n_test`` images."""
        n_train = self.n_train if n_train is None else n_train
        n_test = self.n_test if n_test is None else n_test
        return {
            "x_train": (n_train, *self.image),
            "y_train": (n_train, *self.label),
            "x_test": (n_test, *self.image),
            "y_test": (n_test, *self.label),
        }


# MNIST and Fashion-MNIST: only the full files (a smaller "mnist.npz" is not MNIST); the last
# 10,000 training images validate (the standard 50,000 / 10,000 VAE split).
_MNIST = KerasLayout(60_000, 10_000, (28, 28), (), val_size=10_000, subsets=False, host=DOWNLOAD_HOST)
# CIFAR: the full files or the first N images of each split (a quick study on a subset); the
# last 5,000 training images of the full file validate (the usual 45,000 / 5,000 split).
_CIFAR = KerasLayout(50_000, 10_000, (32, 32, 3), (1,), val_size=5_000, subsets=True, host=CIFAR_HOST)
KERAS_LAYOUTS: dict[str, KerasLayout] = {
    "mnist": _MNIST,
    "fashion_mnist": _MNIST,
    "cifar10": _CIFAR,
    "cifar100": _CIFAR,
}
# What keras.datasets.mnist / fashion_mnist .load_data() return: a local copy must hold these.
KERAS_LAYOUT: dict[str, tuple[int, ...]] = _MNIST.shapes()

# The folder extracted from CIFAR's python tarball: its name and its train / test batch files
# (pickled dicts holding b"data": (n, 3072) uint8, channels first). Keras extracts it under
# <keras home>/datasets/<folder>-target/ and keeps the tarball as <folder>-target_archive.
_CIFAR_FOLDERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)),
    "cifar100": ("cifar-100-python", ("train",), ("test",)),
}
# The only globals a CIFAR batch may name: those that rebuild a NumPy array (as Keras's own
# RestrictedUnpickler allows); anything else (os.system, eval, ...) is refused, never run.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"it names {module}.{name}, which is never loaded")


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
            failure.append(exc.strerror or reason(exc))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 1)
    if thread.is_alive():
        return f"no answer from {what} within {timeout_s:.0f} s"
    return f"cannot reach {what}: {failure[0]}" if failure else None


class KerasDataset(Dataset):
    """``mnist``, ``fashion_mnist``, ``cifar10`` or ``cifar100``: ``data.path`` (a copy of
    Keras's ``<name>.npz`` or its folder), else ``<name>.npz`` in the folder named by
    ``TUNER_DATA_DIR``, else Keras's own downloader. A local file must be the real dataset
    (keys, shapes and dtypes of what ``keras.datasets.<name>.load_data()`` returns).

    CIFAR also reads the folder extracted from the python tarball (``cifar-10-batches-py``,
    ``cifar-100-python``): given as ``data.path`` or inside that folder, inside the
    ``TUNER_DATA_DIR`` folder, or in Keras's cache, where it is read without loading Keras.
    A CIFAR copy may hold the first N ≤ 50,000 + 10,000 images (a quick study on a subset).

    Validation: the standard split of the full dataset, from the end of the training images
    (MNIST / Fashion-MNIST: the last 10,000 of 60,000; CIFAR: the last 5,000 of 50,000, the
    usual 45,000 / 5,000 split); a CIFAR subset is split by the seeded ``data.val_fraction``."""

    kind = "keras"
    NAMES: ClassVar[tuple[str, ...]] = tuple(KERAS_LAYOUTS)

    def __init__(self, name: str, path: str | None = None) -> None:
        if name not in self.NAMES:
            raise DataError(f"dataset: unknown dataset {name!r}; choose one of {list(self.NAMES)}, or give a path")
        self.name = name
        self.path = path

    @property
    def layout(self) -> KerasLayout:
        return KERAS_LAYOUTS[self.name]

    @property
    def _file_name(self) -> str:
        return f"{self.name}.npz"

    @property
    def _batches_folder(self) -> str | None:
        """The name of the folder extracted from the dataset's tarball (CIFAR only)."""
        return _CIFAR_FOLDERS[self.name][0] if self.name in _CIFAR_FOLDERS else None

    def _folder_copy(self, folder: Path) -> Path | None:
        """The copy that ``folder`` holds: ``<name>.npz``, or (CIFAR) the extracted folder,
        which ``folder`` may be itself."""
        if (folder / self._file_name).exists():
            return folder / self._file_name
        batches = self._batches_folder
        if batches is not None:
            for candidate in (folder, folder / batches, folder / f"{batches}-target" / batches):
                if (candidate / _CIFAR_FOLDERS[self.name][1][0]).exists():
                    return candidate
        return None

    def _local_file(self) -> Path | None:
        """The local copy to read (an .npz file, or CIFAR's extracted folder), or None."""
        name = self._file_name
        batches = self._batches_folder
        holding = f"{name} (or {batches}/)" if batches else name
        what = (
            f"a copy of {name} (keras.datasets layout), the folder holding it, or the {batches} folder extracted "
            "from Keras's download"
            if batches
            else f"a copy of {name} (keras.datasets layout) or the folder holding it"
        )
        if self.path is not None:
            if not self.path.strip():
                raise DataError(f"data.path: empty; remove it, or give a copy of {name} or the folder holding it")
            path = Path(self.path).expanduser()
            if not path.exists():
                raise DataError(f"{path}: not found; data.path of dataset {self.name} is {what}")
            if not path.is_dir():
                return path  # the file itself: checked when read
            found = self._folder_copy(path)
            if found is None:
                raise DataError(f"{path}: no {holding} in this folder; data.path of dataset {self.name} is {what}")
            return found
        location = os.environ.get(DATA_DIR_ENV)
        if location is None:
            return self._keras_cache()
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
        found = self._folder_copy(folder)
        if found is None:
            raise DataError(
                f"{DATA_DIR_ENV}={location}: no {holding} in that folder; put {name} (keras.datasets layout) there, "
                f"or unset {DATA_DIR_ENV} to download it with Keras"
            )
        return found

    def _keras_cache(self) -> Path | None:
        """CIFAR's folder as Keras extracted it, when complete: read without loading Keras."""
        if self._batches_folder is None:
            return None
        folder = _keras_home() / "datasets" / f"{self._batches_folder}-target" / self._batches_folder
        _, train_files, test_files = _CIFAR_FOLDERS[self.name]
        return folder if all((folder / file).is_file() for file in train_files + test_files) else None

    @property
    def _layout_fix(self) -> str:
        """How to mend a copy that does not match the layout."""
        own = "for your own images use dataset: npz"
        if not self.layout.subsets:
            return own  # MNIST: a copy is Keras's own file, not something one writes
        return f"save the arrays of keras.datasets.{self.name}.load_data() with numpy.savez, or {own}"

    def _refuse_layout(self, file: Path, key: str, array: np.ndarray, n_train: int, n_test: int) -> None:
        """Refuse ``array`` (stored as ``key``) unless it has the layout's shape and dtype."""
        shape = self.layout.shapes(n_train, n_test)[key]
        images = key.startswith("x_")
        if array.shape == shape and (array.dtype == np.uint8 if images else array.dtype.kind in "iu"):
            return
        kind = "uint8" if images else "integer labels"
        found = f"{key} is {array.shape} {array.dtype}"
        full = self.layout.shapes()[key]
        if not self.layout.subsets:
            wanted = f"Keras's {self.name} holds {shape} {kind}"
        elif images or shape[0] == full[0]:
            wanted = f"Keras's {self.name} holds {full} {kind}" + (
                f" (or the first N ≤ {full[0]}: {_shape_text(('N', *full[1:]))})" if images else ""
            )
        else:
            x_key = key.replace("y_", "x_")
            wanted = f"expected {shape} {kind}, one per image of {x_key}"
        raise DataError(f"{file}: not a copy of {self._file_name}: {found}, {wanted}; {self._layout_fix}")

    def _counts(self, train: np.ndarray, test: np.ndarray) -> tuple[int, int]:
        """The image counts the labels must match: a subset's own counts when the layout allows
        subsets and they fit, else the full dataset's (so that the message names those)."""
        full = (self.layout.n_train, self.layout.n_test)
        if not self.layout.subsets:
            return full
        counts = tuple(
            len(array) if array.ndim > 0 and 1 <= len(array) <= limit else limit
            for array, limit in zip((train, test), full, strict=True)
        )
        return counts[0], counts[1]

    def _read_copy(self, file: Path) -> RawImages:
        fix = f"give a copy of {self._file_name} (keras.datasets layout); for your own images use dataset: npz"
        keys = self.layout.shapes()
        with _npz_archive(file, fix) as archive:
            found = list(archive.files)
            if any(key not in found for key in keys):
                raise DataError(
                    f"{file}: not a copy of {self._file_name}: found keys {_keys(found)}, expected "
                    f"{', '.join(keys)} (the keras.datasets layout); {self._layout_fix}"
                )
            arrays = {key: _read_array(archive, key, file) for key in keys}
        n_train, n_test = self._counts(arrays["x_train"], arrays["x_test"])
        for key, array in arrays.items():
            self._refuse_layout(file, key, array, n_train, n_test)
        return RawImages(
            arrays["x_train"], arrays["x_test"], source=str(file), train_name="x_train", test_name="x_test"
        )

    def _read_batches(self, folder: Path) -> RawImages:
        """CIFAR's extracted folder: the pickled batches, unpickled with NumPy's globals only."""
        _, train_files, test_files = _CIFAR_FOLDERS[self.name]
        fix = f"extract {folder.name} again from Keras's download, or give a copy of {self._file_name}"
        splits = [
            np.concatenate([self._read_batch(folder / f, fix) for f in files]) for files in (train_files, test_files)
        ]
        n_train, n_test = self._counts(*splits)
        for key, array in (("x_train", splits[0]), ("x_test", splits[1])):
            self._refuse_layout(folder, key, array, n_train, n_test)
        return RawImages(splits[0], splits[1], source=str(folder), train_name=train_files[0], test_name=test_files[0])

    def _read_batch(self, file: Path, fix: str) -> np.ndarray:
        """One batch file's images as (n, 32, 32, 3) uint8."""
        try:
            info = file.stat()
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc.strerror or reason(exc)}); {fix}") from None
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{file}: not a regular file; {fix}")
        try:
            with file.open("rb") as stream:
                batch = _ArraysOnlyUnpickler(stream, encoding="bytes").load()
        except Exception as exc:  # noqa: BLE001 - truncated, not a pickle, forbidden globals...
            raise DataError(f"{file}: not a CIFAR batch ({reason(exc)}); {fix}") from None
        data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
        side = self.layout.image[0]
        pixels = side * side * self.layout.image[2]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
            found = f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(f"{file}: not a CIFAR batch: its data is {found}, expected (n, {pixels}) uint8; {fix}")
        return data.reshape(-1, self.layout.image[2], side, side).transpose(0, 2, 3, 1)

    def _cache_files(self) -> list[Path]:
        """What Keras's ``load_data`` reads without the network: when all exist, no probe."""
        datasets = _keras_home() / "datasets"
        if self.name == "mnist":
            return [datasets / "mnist.npz"]
        if self._batches_folder is not None:
            return [datasets / f"{self._batches_folder}-target_archive"]
        return [datasets / "fashion-mnist" / name for name in _FASHION_FILES]

    def _download(self) -> RawImages:
        fix = (
            f"without internet, put {self._file_name} (keras.datasets layout) in a folder and set {DATA_DIR_ENV} "
            "to it, or data.path to the file"
        )
        cached = self._cache_files()
        if not all(file.is_file() for file in cached):
            host = self.layout.host
            offline = _unreachable(host)
            if offline:
                # Before Keras loads: nothing is created (no ~/.keras) and TensorFlow prints nothing.
                raise DataError(f"{self.name}: no local copy, and Keras cannot download it ({offline}); {fix}")
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
            raise DataError(f"{self.name}: cannot download it with Keras ({reason(exc)}); {fix}") from None
        finally:
            socket.setdefaulttimeout(previous)
        if np.ndim(x_train) == 4 and keras.backend.image_data_format() == "channels_first":
            # Keras's CIFAR loaders follow the configured data format; the pipeline is NHWC.
            x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
        return RawImages(x_train, x_test, source=self.name, train_name="x_train", test_name="x_test")

    def load(self) -> RawImages:
        local = self._local_file()
        if local is None:
            raw = self._download()
        else:
            extracted = local.is_dir() and local.name != self._file_name
            raw = self._read_batches(local) if extracted else self._read_copy(local)
        # The standard split of the full dataset: its last val_size training images validate.
        raw.val_size = self.layout.val_size if len(raw.train) == self.layout.n_train else None
        return raw

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path}


def _shape_text(shape: tuple[int | str, ...]) -> str:
    return f"({', '.join(map(str, shape))})"


def _parents(files: list[Path]) -> list[Path]:
    """The folders above ``files`` inside Keras's home, outermost first."""
    home = _keras_home()
    folders: list[Path] = []
    for file in files:
        for folder in reversed(file.parents):
            if folder != home and home in folder.parents and folder not in folders:
                folders.append(folder)
    return folders
