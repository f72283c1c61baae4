"""``mnist`` and ``fashion_mnist``: a local copy in Keras's layout, or Keras's downloader
after a time-limited probe of the download host."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tuner.errors import DataError, reason
from tuner.vae.data._base import Dataset, RawImages
from tuner.vae.data._npz_files import _keys, _npz_archive, _read_array

DATA_DIR_ENV = "TUNER_DATA_DIR"

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
            offline = _unreachable()
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
