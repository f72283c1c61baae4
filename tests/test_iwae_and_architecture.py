"""The importance-weighted training objective, the searchable architecture, and their search."""

from __future__ import annotations

import math

import keras
import numpy as np
import optuna
import pytest

from tests.helpers import tiny_study_dict
from tuner.config import TrainConfig
from tuner.errors import ConfigError
from tuner.search.space import sample_config
from tuner.search.study_file import validate_study
from tuner.vae.model import VAE
from tuner.vae.training import train


def np_iwae_loss(recon_k, z, eps, log_var, beta, kl):
    d = 0.5 * (z**2 - eps**2 - log_var[:, None, :]).sum(-1)
    log_w = -recon_k - beta * (d - d.mean(-1, keepdims=True))
    m = log_w.max(-1, keepdims=True)
    bound = (m + np.log(np.exp(log_w - m).mean(-1, keepdims=True)))[:, 0]
    return (-bound + beta * kl).mean()


def test_iwae_with_k1_is_the_elbo_loss(tiny_config, tiny_splits):
    """Same seed: the iwae objective with k = 1 trains exactly like the ELBO."""
    elbo = train(tiny_config(schedule={"max_beta": 2.0}), tiny_splits)
    iwae = train(tiny_config(schedule={"max_beta": 2.0}, training={"objective": "iwae", "iwae_k": 1}), tiny_splits)
    assert iwae.history[0]["loss"] == pytest.approx(elbo.history[0]["loss"], rel=1e-5)
    assert iwae.val_elbo == pytest.approx(elbo.val_elbo, rel=1e-5)


@pytest.mark.backend
def test_iwae_loss_matches_numpy(random_images):
    model = VAE((28, 28, 1), latent_dim=3, filters=[4, 8], objective="iwae", iwae_k=5, seed=2)
    x = (random_images > 0.5).astype("float32")
    out = model(x, training=True)
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(y_pred=out)))
    # Recompute with NumPy from the same draws: a fresh generator with the model's seed.
    stats = keras.ops.convert_to_numpy(model.encoder(x)).astype(np.float64)
    mean, log_var = stats[:, :3], stats[:, 3:]
    eps = keras.ops.convert_to_numpy(keras.random.normal((8, 15), seed=keras.random.SeedGenerator(2))).reshape(8, 5, 3)
    z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps
    logits = keras.ops.convert_to_numpy(model.decoder(z.reshape(-1, 3).astype("float32"))).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    xr = np.repeat(x, 5, axis=0).astype(np.float64)
    recon_k = -(xr * np.log(p) + (1 - xr) * np.log(1 - p)).reshape(8, 5, -1).sum(-1)
    kl = (0.5 * (np.exp(log_var) + mean**2 - 1 - log_var)).sum(-1)
    assert loss == pytest.approx(np_iwae_loss(recon_k, z, eps, log_var, 1.0, kl), rel=1e-4)
    # The bound is tighter than the one-sample ELBO estimate (in expectation; here per batch).
    assert loss <= float(keras.ops.convert_to_numpy(keras.ops.mean(out["recon"] + out["kl"]))) + 5


def test_iwae_training_keeps_validation_an_elbo_at_beta_1(tiny_config, tiny_splits):
    result = train(
        tiny_config(data={"dynamic_binarization": True}, training={"objective": "iwae", "iwae_k": 4}), tiny_splits
    )
    row = result.history[0]
    assert row["val_elbo"] == pytest.approx(-(row["val_recon"] + row["val_kl"]), rel=1e-5)
    assert math.isfinite(result.val_elbo)


@pytest.mark.parametrize("block", ["plain", "residual", "gated"])
def test_architectures_build_and_train(tiny_config, tiny_splits, block):
    config = tiny_config(model={"block": block, "depth": 2, "hidden": 8, "log_var_clip": [-6, 2]})
    result = train(config, tiny_splits)
    assert math.isfinite(result.val_elbo)
    layers = [layer.__class__.__name__ for layer in result.model.encoder.layers]
    assert layers.count("Dense") == 2  # hidden + the (mean, log_var) layer
    if block == "gated":
        assert layers.count("Multiply") == 4  # 2 stages × depth 2
    if block == "residual":
        assert layers.count("Add") == 2  # one residual block per stage after the strided conv
    _, log_var = result.model.encode(tiny_splits.val[:16] * 0 + 1e3)
    log_var = keras.ops.convert_to_numpy(log_var)
    assert log_var.min() >= -6 and log_var.max() <= 2


def test_default_architecture_is_unchanged():
    plain = VAE((28, 28, 1), latent_dim=16)
    assert plain.encoder.count_params() == 18_816 + 2 * 16 * (7 * 7 * 64 + 1)
    assert [type(layer).__name__ for layer in plain.decoder.layers][1:3] == ["Dense", "Reshape"]


def test_bad_model_values_are_one_line_errors():
    with pytest.raises(ValueError, match="low < high"):
        TrainConfig.model_validate({"model": {"log_var_clip": [2, -6]}})
    with pytest.raises(ValueError, match="block"):
        TrainConfig.model_validate({"model": {"block": "dense"}})


def test_new_fields_are_searchable_and_iwae_k_is_conditional():
    study = validate_study(
        tiny_study_dict(
            search={
                "objective": {"choices": ["elbo", "iwae"]},
                "iwae_k": {"low": 2, "high": 8, "log": True},
                "block": {"choices": ["plain", "gated"]},
                "depth": {"low": 1, "high": 2},
                "hidden": {"choices": [0, 300]},
                "lr_schedule": {"choices": ["constant", "cosine"]},
                "likelihood": "bernoulli",
            },
            data={"dynamic_binarization": True},
        )
    )
    seen = {"elbo": 0, "iwae": 0}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = opt.ask()
        config = sample_config(trial, study)
        seen[config.training.objective] += 1
        assert ("iwae_k" in trial.params) == (config.training.objective == "iwae")
        assert config.model.block in ("plain", "gated") and config.model.likelihood == "bernoulli"
        opt.tell(trial, 0.0)
    assert seen["elbo"] and seen["iwae"]
    with pytest.raises(ConfigError, match="search.depth.high"):
        validate_study(tiny_study_dict(search={"depth": {"low": 1, "high": 20}}))
