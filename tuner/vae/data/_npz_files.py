"""Reading ``.npz`` files safely: each file is checked before numpy reads it (see the
package docstring), and object arrays are never unpickled."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import DataError, reason
from tuner.vae.data._base import RawImages


def _regular_file(path: Path, fix: str) -> None:
    """Refuse a path that is not a non-empty regular file, saying what it is instead."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: file not found; {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or reason(exc)}); {fix}") from None
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
        raise DataError(f"{path}: cannot read ({exc.strerror or reason(exc)}); {fix}") from None
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what, how = _what_is(head)
        raise DataError(f"{path}: not a readable .npz file: it is {what}, not a NumPy .npz archive; {how}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises several types: say which file
        raise DataError(
            f"{path}: not a readable .npz file: a damaged zip archive ({reason(exc)}); write it again with numpy.savez"
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
        raise DataError(f"{path}: array {key!r} cannot be read ({reason(exc)}); write the file again") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt member: say which file and array
        raise DataError(
            f"{path}: array {key!r} cannot be read ({reason(exc)}); the file may be truncated: write it again"
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
        factors, names = _npz_factors(archive, found, path)
    return RawImages(
        train, test, source=str(path), train_name=train_name, test_name=test_name, factors=factors, factor_names=names
    )


def _npz_factors(archive: Any, found: list[str], path: Path) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The factors of variation of the training images: ``factors`` (N, K) with optional
    ``factor_names`` (K,), or one (N,) array ``factors_<name>`` per factor, in the file's order.
    Their values are checked against the images by the split."""
    per_name = [key for key in found if key.startswith("factors_")]
    if "factors" in found and per_name:
        raise DataError(
            f"{path}: holds both 'factors' and {per_name[0]!r}; give either one (N, K) array 'factors' or one "
            "'factors_<name>' array per factor"
        )
    if "factors" in found:
        factors = _read_array(archive, "factors", path)
        k = factors.shape[1] if factors.ndim == 2 else 1
        names = tuple(f"factor_{i}" for i in range(k))
        if "factor_names" in found:
            given = _read_array(archive, "factor_names", path)
            if given.dtype.kind not in "US" or given.shape != (k,):
                raise DataError(
                    f"{path}: 'factor_names' must be {k} strings, one per column of 'factors', got dtype {given.dtype} "
                    f"shape {given.shape}"
                )
            names = tuple(str(name) for name in given)
        return factors, names
    if not per_name:
        return None, ()
    columns = [_read_array(archive, key, path) for key in per_name]
    for key, column in zip(per_name, columns, strict=True):
        if column.ndim != 1 or len(column) != len(columns[0]):
            raise DataError(
                f"{path}: factor array {key!r} has shape {column.shape}; each factors_<name> must be one value per "
                f"image, shape ({len(columns[0])},) like {per_name[0]!r}"
            )
    return np.stack(columns, axis=1), tuple(key.removeprefix("factors_") for key in per_name)
