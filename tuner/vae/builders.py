"""Bring your own encoder and decoder: ``model.builder: "my_package.vaes:build"``.

The callable is called as ``build(image_shape=(H, W, C), latent_dim=L, params_per_channel=P,
model=<the model section as a dict>)`` and returns ``(encoder, decoder)``, two Keras models:
the encoder maps images to the posterior's mean and log-variance (one output of width 2·L,
mean first, or two outputs of width L), the decoder maps (N, L) latents to the likelihood's
parameters, (N, H, W, C·P). Everything else (β schedules, likelihoods, the IWAE objective,
pruning, export, refit, evaluation) applies unchanged: like KerasTuner's hypermodel, without
losing the β machinery.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import keras

from tuner.errors import ConfigError

BUILDER_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def import_builder(spec: str) -> Any:
    """The callable named ``"package.module:function"``.

    Raises:
        ConfigError: the module cannot be imported or holds no such callable (one line).
    """
    if not BUILDER_PATTERN.match(spec):
        raise ConfigError(f"model.builder: must look like 'package.module:function', got {spec!r}")
    module_name, function = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the user's module failing to import
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"model.builder: cannot import {module_name!r} ({reason}); is it installed or on PYTHONPATH?"
        ) from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ConfigError(f"model.builder: {module_name!r} has no callable {function!r}")
    return builder


def _shape(model: Any) -> list[tuple[Any, ...]]:
    outputs = model.outputs if isinstance(getattr(model, "outputs", None), list) else [model.output]
    return [tuple(output.shape[1:]) for output in outputs]


def build_user_networks(
    spec: str, image_shape: tuple[int, int, int], latent_dim: int, params_per_channel: int, model: dict[str, Any]
) -> tuple[keras.Model, keras.Model]:
    """Call the user's builder and check what it returns; a two-output encoder is wrapped
    into one output [mean, log_var] (what :class:`~tuner.vae.model.VAE` reads).

    Raises:
        ConfigError: the builder fails or returns models of the wrong kind or shape (one line).
    """
    builder = import_builder(spec)
    try:
        networks = builder(
            image_shape=image_shape, latent_dim=latent_dim, params_per_channel=params_per_channel, model=model
        )
    except Exception as exc:  # noqa: BLE001 - the user's code: say whose error it is, in one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"model.builder: {spec} raised {type(exc).__name__}: {reason}") from None
    if not (isinstance(networks, (tuple, list)) and len(networks) == 2):
        raise ConfigError(f"model.builder: {spec} must return (encoder, decoder), got {type(networks).__name__}")
    encoder, decoder = networks
    for role, net in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(net, keras.Model):
            raise ConfigError(f"model.builder: the {role} {spec} returned is a {type(net).__name__}, not a keras.Model")
    enc_shapes = _shape(encoder)
    if enc_shapes == [(latent_dim,), (latent_dim,)]:
        inputs = keras.Input(image_shape)
        mean, log_var = encoder(inputs)
        encoder = keras.Model(inputs, keras.layers.Concatenate()([mean, log_var]), name="encoder")
    elif enc_shapes != [(2 * latent_dim,)]:
        raise ConfigError(
            f"model.builder: the encoder must output (N, {2 * latent_dim}) = [mean, log_var] or two (N, {latent_dim}) "
            f"outputs, got {', '.join(str((None, *s)) for s in enc_shapes)}"
        )
    wanted = (*image_shape[:2], image_shape[2] * params_per_channel)
    if _shape(decoder) != [wanted]:
        got = ", ".join(str((None, *s)) for s in _shape(decoder))
        raise ConfigError(f"model.builder: the decoder must output (N, {', '.join(map(str, wanted))}), got {got}")
    return encoder, decoder
