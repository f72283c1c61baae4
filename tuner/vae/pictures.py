"""Pictures of a model's work as uint8 arrays: originals above their reconstructions, grids
of samples. Saved as PNG artifacts by a study and drawn by reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tuner.vae.model import VAE


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Stack rows of images (each (n, H, W, C) in [0, 1]) into one uint8 picture:
    (H', W') for grayscale, (H', W', 3) for RGB."""
    lines = [np.concatenate(list(row), axis=1) for row in rows]
    grid = np.concatenate(lines, axis=0)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    return (np.clip(grid, 0, 1) * 255).astype(np.uint8)


def save_png(pixels: np.ndarray, path: Path, scale: int = 2) -> Path:
    """Write a uint8 picture, enlarged ``scale`` times without smoothing."""
    from PIL import Image

    image = Image.fromarray(pixels)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    image.save(path)
    return path


def reconstruction_picture(model: VAE, images: np.ndarray, n: int = 8) -> np.ndarray:
    """Originals (top row) above their reconstructions (bottom row)."""
    import keras

    originals = images[:n]
    recon = keras.ops.convert_to_numpy(model.reconstruct(originals))
    return image_grid([originals, recon])
