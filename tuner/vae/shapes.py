"""The network's shape as a function of the images' (no Keras here: study files and stored
studies are compared with it without a backend)."""

from __future__ import annotations

import math

AUTO_MAX_SIDE = 8  # filters: auto adds stages until the feature map is at most this many pixels
AUTO_WIDTHS = (32, 64, 128, 256)  # then 256 for every further stage


def auto_filters(image_shape: tuple[int, int, int]) -> list[int]:
    """``filters: auto`` for images of ``image_shape``: stride-2 stages until the larger side is
    at most 8 px (at least one), widths 32, 64, 128, 256, then 256. 8 px → [32];
    28 or 32 px → [32, 64] (the original architecture); 64 → 3 stages; 128 → 4; 256 → 5.

    Two stages on a 128 px photo leave a 32×32×64 map, whose dense layer to the latent
    dominates the model and which a 16- to 64-unit latent cannot summarise: such a study
    learned nothing (≥ 8 bits per dimension). Stopping at 4–8 px keeps that layer small."""
    side = max(image_shape[0], image_shape[1])
    stages = max(1, math.ceil(math.log2(side / AUTO_MAX_SIDE))) if side > AUTO_MAX_SIDE else 1
    return [AUTO_WIDTHS[min(i, len(AUTO_WIDTHS) - 1)] for i in range(stages)]


def resolve_filters(filters: str | list[int], image_shape: tuple[int, int, int]) -> list[int]:
    """``model.filters`` as a list of widths (``auto``: :func:`auto_filters`)."""
    return auto_filters(image_shape) if isinstance(filters, str) else list(filters)


# Image sizes known from the data section alone (for comparing a stored study with its file).
KNOWN_SIDES = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "cifar100": 32}


def filters_for_data(filters: str | list[int], dataset: str, size: list[int] | None) -> str | list[int]:
    """``filters`` resolved where the data section alone gives the image size (a named dataset,
    or ``data.size``); else unchanged."""
    if not isinstance(filters, str):
        return list(filters)
    if size:
        return auto_filters((size[0], size[1], 1))
    side = KNOWN_SIDES.get(dataset)
    return auto_filters((side, side, 1)) if side else filters
