"""``dataset: folder``: a folder of PNG/JPEG images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tuner._system import usable_cores
from tuner.errors import DataError, reason
from tuner.vae.data._base import Dataset, RawImages
from tuner.vae.data.cache import cached, decode_all, source_key

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# PIL modes of more than 8 bits per channel: convert("L") would clip them to white.
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


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
            why = "not a PNG or JPEG image" if type(exc).__name__ == "UnidentifiedImageError" else reason(exc)
            raise DataError(f"{file}: cannot read image: {why}; remove or replace the file") from None

    def load(self) -> RawImages:
        """The folder's images as a read-only uint8 memory map of its decoded copy in the
        cache (:mod:`tuner.vae.data.cache`), decoded first if there is none for these files
        and options."""
        folder = Path(self.path).expanduser()
        files = self._files(folder)
        key = source_key("folder", folder, files, {"size": self.size, "color": self.color})
        images = cached(key, lambda out: self._decode(folder, files, out), str(folder))
        return RawImages(images, None, source=str(folder))

    def _decode(self, folder: Path, files: list[Path], out: Path) -> None:
        """Decode ``files`` in parallel into the ``.npy`` file ``out``, one image at a time
        (never all of them as a list in memory)."""
        images: np.memmap | None = None
        first_of_size: dict[tuple[int, ...], Path] = {}
        for i, image in enumerate(decode_all(files, self._read, str(folder), usable_cores())):
            if images is None:  # the first image sets the array's shape
                images = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(len(files), *image.shape))
            first_of_size.setdefault(image.shape[:2], files[i])
            if image.shape == images.shape[1:]:
                images[i] = image
        assert images is not None  # _files() refuses a folder without images
        if len(first_of_size) > 1:
            (size_a, file_a), (size_b, file_b) = list(first_of_size.items())[:2]
            raise DataError(
                f"{folder}: images have {len(first_of_size)} different sizes; set data.size: [height, width] to "
                f"resize them (e.g. {file_a.name} is {size_a[0]}×{size_a[1]}, {file_b.name} {size_b[0]}×{size_b[1]})"
            )
        if self.color == "auto" and images.ndim == 4 and _all_grey(images):
            grey_path = out.with_name("grey.npy")
            grey = np.lib.format.open_memmap(grey_path, mode="w+", dtype=np.uint8, shape=images.shape[:3])
            for start in range(0, len(images), 4096):  # what convert("L") gives for R = G = B
                grey[start : start + 4096] = images[start : start + 4096, ..., 0]
            grey.flush()
            del grey, images
            os.replace(grey_path, out)
            return
        images.flush()

    def get_config(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "color": self.color}


def _all_grey(rgb: np.ndarray) -> bool:
    for start in range(0, len(rgb), 4096):  # in chunks: rgb may be a memory map of many GB
        chunk = rgb[start : start + 4096]
        if not (np.array_equal(chunk[..., 0], chunk[..., 1]) and np.array_equal(chunk[..., 0], chunk[..., 2])):
            return False
    return True
