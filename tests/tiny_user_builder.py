"""A user's own encoder and decoder, for tests/test_user_builder.py (``model.builder``)."""

from __future__ import annotations

from typing import Any

import keras


def build(image_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int, model: dict[str, Any]):
    """A two-output MLP encoder (mean, log-variance) and an MLP decoder."""
    height, width, channels = image_shape
    width_ = model.get("hidden") or 32
    inputs = keras.Input(image_shape)
    h = keras.layers.Dense(width_, activation="relu")(keras.layers.Flatten()(inputs))
    encoder = keras.Model(inputs, [keras.layers.Dense(latent_dim)(h), keras.layers.Dense(latent_dim)(h)])
    z = keras.Input((latent_dim,))
    out = keras.layers.Dense(height * width * channels * params_per_channel)(z)
    decoder = keras.Model(z, keras.layers.Reshape((height, width, channels * params_per_channel))(out))
    return encoder, decoder


def wrong_decoder(image_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int, model: dict[str, Any]):
    encoder, _ = build(image_shape, latent_dim, params_per_channel, model)
    z = keras.Input((latent_dim,))
    return encoder, keras.Model(z, keras.layers.Reshape((7, 7, 1))(keras.layers.Dense(49)(z)))


def broken(**kwargs: Any):
    raise RuntimeError("out of ideas")


not_callable = 3
