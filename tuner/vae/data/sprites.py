"""``dataset: sprites``: dSprites-style images (Matthey et al. 2017) generated on the spot.

Binary square images of one white shape on black, for every combination of five factors, in
dSprites's order (the last factor varies fastest): shape (square, ellipse, heart), scale (0.5
to 1 of the largest), orientation (evenly spaced over a full turn), x and y position (evenly
spaced, the shape always whole inside the image). The images and their ``factors`` (N, 5)
integers are a pure function of the :class:`~tuner.config.SpritesConfig`, so every worker
and every run generates the same data without a download; ``samples`` draws that many
combinations with ``seed`` instead of the whole grid.

dSprites itself (3 × 6 × 40 × 32 × 32 at 64×64) cannot be generated here bit for bit; to use
it, save its ``imgs`` and ``latents_classes[:, 1:]`` as ``images`` and ``factors`` in an
``.npz`` and point ``dataset: npz`` at it. As in dSprites, the square repeats itself every
quarter turn and the ellipse every half turn, so orientation is partly unidentifiable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tuner.config import SpritesConfig
from tuner.errors import DataError
from tuner.vae.data._base import Dataset, RawImages

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SHAPES = ("square", "ellipse", "heart")
# The largest shape's half-width as a fraction of the image side: 8 px on 64 px, as dSprites.
LARGEST = 1 / 8
# Half-extent of the mask around its centre, in units of the shape's half-width: the rotated
# square's corner (sqrt 2) and the heart's lobes (about 1.2) fit inside.
REACH = 1.45


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the points (u, v) (shape units, v up) lie inside the shape."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == "ellipse":
        return u**2 + (v / 0.5) ** 2 <= 1.0  # elongated, so that orientation shows
    x, y = u * 1.15, v * 1.15 + 0.15  # the heart curve spans about [-1.14, 1.14] × [-1, 1.2]
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def _mask(shape: str, half_width: float, angle: float, reach: int) -> np.ndarray:
    """(2 reach + 1)² boolean mask of the shape centred in it, rotated by ``angle``."""
    offsets = np.arange(-reach, reach + 1, dtype=np.float64)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    # Rotate each pixel back by the shape's angle; image rows grow downwards, so v = -dy.
    u = (cos * dx - sin * dy) / half_width
    v = (-sin * dx - cos * dy) / half_width
    return _inside(shape, u, v)


class SpritesDataset(Dataset):
    """Generated dSprites-style images with their factors (see the module docstring)."""

    kind = "sprites"

    def __init__(self, config: SpritesConfig | None = None, **fields: Any) -> None:
        self.config = config if config is not None else SpritesConfig(**fields)

    @property
    def grid(self) -> tuple[int, int, int, int, int]:
        c = self.config
        return c.shapes, c.scales, c.orientations, c.positions, c.positions

    def load(self) -> RawImages:
        images, factors = generate(self.config)
        return RawImages(
            images[..., None], None, source="sprites", train_name="images", factors=factors, factor_names=FACTOR_NAMES
        )

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpritesDataset:
        return cls(SpritesConfig(**config))


def generate(config: SpritesConfig) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, side, side) uint8 0/255, factors (N, 5) int64) for ``config``.

    Raises:
        DataError: more positions than the image has room for.
    """
    side = config.image_size
    reach = math.ceil(REACH * LARGEST * side)
    room = side - 2 * reach
    if config.positions > room:
        raise DataError(
            f"data.sprites.positions: {config.positions} positions do not fit in {side}-pixel images (at most {room} "
            "distinct ones); lower positions or raise image_size"
        )
    grid = (config.shapes, config.scales, config.orientations, config.positions, config.positions)
    total = math.prod(grid)
    if config.samples is None:
        rows = np.arange(total)
    elif config.samples > total:
        raise DataError(
            f"data.sprites.samples: {config.samples} asked, but the grid holds {total} combinations; lower samples "
            "or leave it out for all of them"
        )
    else:
        rows = np.sort(np.random.default_rng(config.seed).choice(total, config.samples, replace=False))
    factors = np.stack(np.unravel_index(rows, grid), axis=1).astype(np.int64)
    scales = np.linspace(0.5, 1.0, config.scales) if config.scales > 1 else np.ones(1)
    angles = np.arange(config.orientations) * (2 * math.pi / config.orientations)
    centres = np.round(reach + np.linspace(0, 1, config.positions) * (room - 1)).astype(int)
    masks = {
        (s, c, o): _mask(SHAPES[s], scales[c] * LARGEST * side, angles[o], reach)
        for s in range(config.shapes)
        for c in range(config.scales)
        for o in range(config.orientations)
    }
    images = np.zeros((len(rows), side, side), dtype=np.uint8)
    for image, (s, c, o, x, y) in zip(images, factors, strict=True):
        top, left = centres[y] - reach, centres[x] - reach
        image[top : top + 2 * reach + 1, left : left + 2 * reach + 1][masks[s, c, o]] = 255
    return images, factors
