"""filters: auto — stride-2 stages until the feature map is at most 8 px."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.config import TrainConfig, validate
from tuner.errors import ConfigError
from tuner.vae.shapes import auto_filters, filters_for_data, resolve_filters


@pytest.mark.parametrize(
    "side, widths",
    [
        (8, [32]),
        (28, [32, 64]),  # MNIST: the original architecture
        (32, [32, 64]),
        (64, [32, 64, 128]),
        (128, [32, 64, 128, 256]),
        (256, [32, 64, 128, 256, 256]),
        (5, [32]),
    ],
)
def test_auto_stages_until_the_map_is_at_most_8_px(side, widths):
    assert auto_filters((side, side, 3)) == widths
    final = side
    for _ in widths:
        final = -(-final // 2)  # each stride-2 stage halves the side, rounding up
    assert final <= 8 and (len(widths) == 1 or -(-side // 2 ** (len(widths) - 1)) > 8)


def test_the_larger_side_decides_and_explicit_widths_are_kept():
    assert auto_filters((64, 256, 1)) == auto_filters((256, 256, 1))
    assert resolve_filters([16, 16, 16], (256, 256, 3)) == [16, 16, 16]
    assert resolve_filters("auto", (28, 28, 1)) == [32, 64]


def test_filters_default_to_auto_and_lists_are_checked():
    assert TrainConfig.model_validate({}).model.filters == "auto"
    assert TrainConfig.model_validate({"model": {"filters": [8, 16]}}).model.filters == [8, 16]
    for bad in ([], [8] * 9, "big", [0]):
        with pytest.raises(ConfigError, match="model.filters"):
            validate(TrainConfig, {"model": {"filters": bad}}, "test")


def test_a_data_section_that_gives_the_size_resolves_auto():
    assert filters_for_data("auto", "mnist", None) == [32, 64]
    assert filters_for_data("auto", "folder", [128, 128]) == [32, 64, 128, 256]
    assert filters_for_data("auto", "folder", None) == "auto"  # unknown until the images are read
    assert filters_for_data([8], "mnist", None) == [8]


def test_the_photos_study_file_searches_what_matters_on_photos():
    from tuner.api import load_study_file

    study = load_study_file(Path(__file__).resolve().parents[1] / "studies" / "photos.yaml")
    assert study.base_config().model.filters == "auto" and study.base_config().data.dataset == "folder"
    assert {"latent_dim", "block", "depth", "max_beta", "schedule"} <= set(study.search)
