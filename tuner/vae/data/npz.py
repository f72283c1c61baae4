"""``dataset: npz``: a user's own ``.npz`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.errors import DataError
from tuner.vae.data._base import Dataset, RawImages
from tuner.vae.data._npz_files import _npz_images


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
