"""``model.builder``: a user's own encoder and decoder, with the β machinery unchanged."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from tuner.config import TrainConfig
from tuner.errors import ConfigError
from tuner.vae.training import train


def test_a_tiny_user_builder_trains_with_every_likelihood(tiny_config, tiny_splits):
    result = train(
        tiny_config(model={"builder": "tests.tiny_user_builder:build", "hidden": 16}, schedule={"max_beta": 2.0}),
        tiny_splits,
    )
    assert math.isfinite(result.val_elbo) and result.config.model.likelihood == "discretized_logistic"
    assert result.model.encoder.layers[1].name != "conv2d"  # the user's MLP, not the built-in convs
    assert result.history[0]["beta"] == pytest.approx(2.0)
    binary = train(
        tiny_config(model={"builder": "tests.tiny_user_builder:build"}, data={"dynamic_binarization": True}),
        tiny_splits,
    )
    assert binary.model.decoder.output.shape[1:] == (28, 28, 1)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tests.no_such_module:build", "cannot import 'tests.no_such_module'"),
        ("tests.tiny_user_builder:missing", "has no callable 'missing'"),
        ("tests.tiny_user_builder:not_callable", "has no callable 'not_callable'"),
        ("tests.tiny_user_builder:broken", "raised RuntimeError: out of ideas"),
        ("tests.tiny_user_builder:wrong_decoder", r"the decoder must output \(N, 28, 28, 2\), got \(None, 7, 7, 1\)"),
    ],
)
def test_builder_errors_are_one_line(tiny_config, tiny_splits, spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        train(tiny_config(model={"builder": spec}), tiny_splits)
    assert "\n" not in str(err.value)


def test_builder_must_name_module_and_function():
    with pytest.raises(ValidationError, match="builder"):
        TrainConfig.model_validate({"model": {"builder": "just_a_module"}})
