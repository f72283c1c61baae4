"""Numerical accuracy of what `tuner evaluate` and the likelihoods report (an audit's findings):
the discretized logistic in float32 against a float64 reference, the per-dimension KL under a
log-variance clip, the ELBO's Monte Carlo error, and searched likelihoods that cannot train."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from scipy.special import log_expit

from tests.helpers import tiny_study_dict
from tuner.cli import main
from tuner.vae import likelihoods as L
from tuner.vae.evaluation import ELBO_DRAWS, evaluate, posterior_stats
from tuner.vae.model import VAE


def reference_log_probs(means: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """log P(level) in float64, shape (means, log-scales, 256), for the float32 parameters
    given: each inner bin's σ(a) − σ(b) taken on the side of the mean where both terms are
    small (σ(−b) − σ(−a) above it), as log σ(hi) + log1p(−exp(log σ(lo) − log σ(hi)))."""
    level = np.arange(256, dtype=np.float64)
    y = 2 * level / 255 - 1
    mean = means.astype(np.float64)[:, None, None]
    log_scale = np.maximum(log_scales.astype(np.float64), L.MIN_LOG_SCALE)[None, :, None]
    centred = y - mean
    upper = np.exp(-log_scale) * (centred + 1 / 255)
    lower = np.exp(-log_scale) * (centred - 1 / 255)
    below = centred <= 0
    hi, lo = np.where(below, upper, -lower), np.where(below, lower, -upper)
    inner = log_expit(hi) + np.log1p(-np.exp(log_expit(lo) - log_expit(hi)))
    return np.where(level == 0, log_expit(upper), np.where(level == 255, log_expit(-lower), inner))


@pytest.mark.backend
def test_discretized_logistic_float32_matches_a_float64_reference():
    """Every level of every bin to 2e-5 nats where P > 1e-5 (measured: 3e-6 on TensorFlow and
    JAX, eager and XLA), and to 1e-3 in the far tails (log P down to about −2,000, measured
    3e-4); the 256 bins sum to 1. Before: 1.6e-4 nats on bins with P > 1e-3 (σ(a) − σ(b)
    cancelling above the mean), 5e-3 near P = 1e-5, and up to 2.15 nats on bins under 1e-5
    (the density-at-centre fallback, at the log-scale floor)."""
    rng = np.random.default_rng(0)
    means = np.concatenate([np.linspace(-1.1, 1.1, 45), rng.uniform(-1, 1, 20)]).astype(np.float32)
    log_scales = np.concatenate([np.linspace(-7, 1, 17), rng.uniform(-7, 0, 8), [-9.0]]).astype(np.float32)
    shape = (len(means), len(log_scales), 256)
    x = np.broadcast_to(np.arange(256, dtype=np.float32) / 255, shape)
    mean = np.broadcast_to(means[:, None, None], shape)
    log_scale = np.broadcast_to(log_scales[None, :, None], shape)
    got = keras.ops.convert_to_numpy(L.discretized_logistic_log_probs(x, mean, log_scale)).astype(np.float64)
    expected = reference_log_probs(means, log_scales)
    assert np.all(np.isfinite(got))
    error = np.abs(got - expected)
    assert error[expected > math.log(1e-5)].max() <= 2e-5
    assert error.max() <= 1e-3, f"worst at log P = {expected.flat[np.argmax(error)]:.1f}"
    np.testing.assert_allclose(np.exp(got).sum(axis=-1), 1.0, atol=2e-5)


@pytest.mark.backend
def test_discretized_logistic_gradients_stay_finite_at_extreme_scales():
    x = np.tile(np.arange(256, dtype=np.float32) / 255, 3)
    mean = np.repeat(np.array([0.2, -3.0, 40.0], np.float32), 256)
    for value in (-30.0, -7.0, 0.0, 30.0, 100.0):
        log_scale = keras.Variable(np.full_like(x, value))
        if keras.backend.backend() == "jax":
            import jax

            grad = jax.grad(lambda s: keras.ops.sum(L.discretized_logistic_log_probs(x, mean, s)))(log_scale.value)
        else:
            import tensorflow as tf

            with tf.GradientTape() as tape:
                total = keras.ops.sum(L.discretized_logistic_log_probs(x, mean, log_scale))
            grad = tape.gradient(total, log_scale.value)
        log_p = keras.ops.convert_to_numpy(L.discretized_logistic_log_probs(x, mean, log_scale.value))
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(grad))), value
        np.testing.assert_allclose(np.exp(log_p.astype(np.float64)).reshape(3, 256).sum(-1), 1.0, atol=2e-5)


def binary_images(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 28, 28, 1)) > 0.5).astype(np.float32)


def test_kl_per_dim_sums_to_the_models_kl_under_a_log_var_clip():
    """The clip binds for part of this untrained encoder's log-variances (−0.3 … 0.5)."""
    model = VAE((28, 28, 1), latent_dim=3, filters=[4, 8], seed=0, log_var_clip=(-0.1, 0.1))
    images = binary_images(16)
    _, log_var = np.split(keras.ops.convert_to_numpy(model.encoder(images)), 2, axis=-1)
    assert np.any(log_var > 0.1)  # the clip matters here
    model_kl = float(np.mean(keras.ops.convert_to_numpy(model(images)["kl"])))
    _, kl_per_dim = posterior_stats(model, images)
    assert kl_per_dim.sum() == pytest.approx(model_kl, abs=1e-3)
    report = evaluate(model, images, k=0)
    assert sum(report.kl_per_dim) == pytest.approx(report.kl, abs=1e-3)
    assert report.kl == pytest.approx(model_kl, abs=1e-3)


def test_the_elbo_is_averaged_over_draws_with_its_standard_error():
    model = VAE((28, 28, 1), latent_dim=3, filters=[4, 8], seed=0)
    images = binary_images(12)
    model(images)  # built, as a trained or restored model is
    single = [evaluate(model, images, k=0, seed=s, elbo_draws=1) for s in range(12)]
    averaged = [evaluate(model, images, k=0, seed=s) for s in range(12)]
    assert all(r.elbo_se is None and r.elbo_draws == 1 for r in single)
    assert all(r.elbo_draws == ELBO_DRAWS and r.elbo_se is not None and r.elbo_se > 0 for r in averaged)
    spread_single = np.std([r.elbo for r in single], ddof=1)
    spread_averaged = np.std([r.elbo for r in averaged], ddof=1)
    assert spread_averaged < 0.6 * spread_single  # 1/√8 ≈ 0.35 expected
    # The reported SE is what the seeds' spread shows (to a factor of 2 with 12 seeds).
    se = float(np.mean([r.elbo_se for r in averaged]))
    assert 0.5 * spread_averaged < se < 2 * spread_averaged
    assert averaged[0].to_dict()["elbo_se"] == averaged[0].elbo_se
    assert averaged[0].elbo == pytest.approx(-(averaged[0].recon + averaged[0].kl))
    # With k ≥ 8 importance samples the ELBO averages the IWAE estimate's own k draws.
    with_iwae = evaluate(model, images, k=32)
    assert with_iwae.elbo_draws == 32 and with_iwae.elbo_se is not None
    assert with_iwae.nll_iwae is not None and -with_iwae.nll_iwae >= with_iwae.elbo - 3 * with_iwae.elbo_se


def test_tuner_evaluate_prints_the_elbo_with_its_standard_error(tiny_config, tiny_splits, tmp_path):
    import json

    from typer.testing import CliRunner

    from tuner.cli import app
    from tuner.vae.saving import save_run
    from tuner.vae.training import train

    save_run(train(tiny_config(data={"dynamic_binarization": True}), tiny_splits), tmp_path / "run")
    result = CliRunner().invoke(
        app, ["evaluate", str(tmp_path / "run"), "--k", "2", "--n", "8", "--json", str(tmp_path / "e.json")]
    )
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if "ELBO" in row)
    assert " ± " in line and f"mean of {ELBO_DRAWS} draws" in line, line
    stored = json.loads((tmp_path / "e.json").read_text())
    assert stored["elbo_se"] > 0 and stored["elbo_draws"] == ELBO_DRAWS


@pytest.mark.parametrize(
    "search, names",
    [
        ({"likelihood": {"choices": ["discretized_logistic", "bernoulli"]}}, "remove it from the choices"),
        ({"likelihood": "bernoulli"}, "fix another likelihood"),
    ],
)
def test_a_searched_likelihood_that_cannot_train_is_refused_before_the_study_exists(
    search, names, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    content = tiny_study_dict("grey")
    content["search"] = {**content["search"], **search}
    study_file = tmp_path / "grey.yaml"
    study_file.write_text(yaml.safe_dump(content))
    database = tmp_path / "t.db"
    with pytest.raises(SystemExit) as exited:
        main(["run", str(study_file), "--storage", f"sqlite:///{database}"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exited.value.code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "error: search.likelihood: bernoulli cannot train on grey images unless data.dynamic_binarization is true"
    ), errors[0]
    assert names in errors[0]
    assert not database.exists()
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["grey.yaml"]


def test_searched_likelihoods_that_can_train_are_accepted(tmp_path):
    from tuner.api import open_run
    from tuner.search.study_file import validate_study

    content = tiny_study_dict("binarized", data={"dynamic_binarization": True})
    content["search"] = {**content["search"], "likelihood": {"choices": ["bernoulli", "auto"]}}
    prepared = open_run(validate_study(content), storage_url=f"sqlite:///{tmp_path}/t.db")
    assert prepared.study_config.name == "binarized"


@pytest.mark.parametrize(
    "choices, images, reason",
    [
        (
            ["discretized_logistic", "pixelcnn_logistic_rgb"],
            np.zeros((4, 8, 8, 1), np.uint8),
            "pixelcnn_logistic_rgb needs RGB images, and the training images are not",
        ),
        (
            ["continuous_bernoulli", "discretized_logistic_rgb"],
            np.full((4, 8, 8, 3), 0.3, np.float32),
            "discretized_logistic_rgb needs 8-bit pixels (multiples of 1/255), and the training images are not",
        ),
    ],
)
def test_each_reason_a_searched_likelihood_cannot_train_is_named(choices, images, reason):
    from types import SimpleNamespace

    from tuner.vae.likelihoods import unfit_search_choice

    assert unfit_search_choice(SimpleNamespace(choices=choices), images, dynamic_binarization=False) == (
        f"search.likelihood: {reason}; remove it from the choices"
    )
    assert unfit_search_choice(SimpleNamespace(choices=choices[:1]), images, dynamic_binarization=False) is None
