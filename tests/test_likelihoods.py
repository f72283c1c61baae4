"""Pixel likelihoods against NumPy references, and the choice of one from the data.

The ``backend``-marked tests (log-probabilities, training and restoring with each likelihood)
run again under JAX (test_backends.py); choosing a likelihood from the data, and refusing one,
is NumPy and Pydantic, the same on every backend."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tuner.errors import DataError
from tuner.vae import likelihoods as L
from tuner.vae.evaluation import evaluate, iwae_nll
from tuner.vae.training import train


def np_sigmoid(v):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-v))


def np_logistic_bins(mean, log_scale):
    """P(level) for the 256 levels of one pixel, from the logistic CDF with open edge bins."""
    y = 2 * np.arange(256) / 255 - 1
    s = math.exp(max(log_scale, L.MIN_LOG_SCALE))
    upper = np.where(np.arange(256) == 255, 1.0, np_sigmoid((y + 1 / 255 - mean) / s))
    lower = np.where(np.arange(256) == 0, 0.0, np_sigmoid((y - 1 / 255 - mean) / s))
    return upper - lower


def to_np(value):
    return keras.ops.convert_to_numpy(value).astype(np.float64)


@pytest.mark.backend
def test_bernoulli_matches_numpy(random_images):
    logits = np.random.default_rng(1).normal(size=random_images.shape).astype(np.float32) * 3
    x, p = random_images.astype(np.float64), np_sigmoid(logits.astype(np.float64))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(-1)
    np.testing.assert_allclose(to_np(L.Bernoulli().nll(random_images, logits)), expected, rtol=1e-4)


@pytest.mark.backend
def test_continuous_bernoulli_matches_numpy_and_integrates_to_one(random_images):
    logits = np.random.default_rng(2).normal(size=random_images.shape).astype(np.float32) * 3
    logits.flat[:5] = [0.0, 1e-5, -1e-4, 20.0, -20.0]  # the series branch and large |λ|
    lam, x = np_sigmoid(logits.astype(np.float64)), random_images.astype(np.float64)
    # C(λ) = 2 atanh(1 − 2λ) / (1 − 2λ), 2 at λ = 1/2
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(np.abs(lam - 0.5) < 1e-6, 2.0, 2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
    log_p = np.log(norm) + x * np.log(lam) + (1 - x) * np.log1p(-lam)
    expected = -log_p.reshape(len(x), -1).sum(-1)
    np.testing.assert_allclose(to_np(L.ContinuousBernoulli().nll(random_images, logits)), expected, rtol=1e-4)
    # A density on [0, 1]: the trapezoid rule over a fine grid gives 1 for every λ.
    grid = np.linspace(0, 1, 20001, dtype=np.float32)
    for logit in (-6.0, -0.5, 0.0, 2.0):
        nll = L.ContinuousBernoulli().nll(grid[:, None, None, None], np.full((len(grid), 1, 1, 1), logit, "float32"))
        assert np.trapezoid(np.exp(-to_np(nll)), grid) == pytest.approx(1.0, abs=1e-3)
    means = to_np(L.ContinuousBernoulli().mean(np.array([-3.0, 0.0, 1e-5, 3.0], "float32")))
    for logit, mean in zip((-3.0, 0.0, 1e-5, 3.0), means, strict=True):
        density = np.exp(-to_np(L.ContinuousBernoulli().nll(grid[:, None], np.full((len(grid), 1), logit, "float32"))))
        assert mean == pytest.approx(np.trapezoid(grid * density, grid), abs=1e-3)


@pytest.mark.backend
@pytest.mark.parametrize("mean, log_scale", [(0.0, -2.0), (-0.9, -4.0), (0.97, -1.0), (0.3, -9.0), (-1.2, 0.5)])
def test_discretized_logistic_sums_to_one_and_matches_numpy(mean, log_scale):
    levels = (np.arange(256, dtype=np.float32) / 255)[:, None, None, None]
    params = np.broadcast_to(np.array([mean, log_scale], "float32"), (256, 1, 1, 2))
    log_p = -to_np(L.DiscretizedLogistic().nll(levels, params))
    expected = np_logistic_bins(mean, log_scale)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=2e-4)
    # Every bin the float64 difference above resolves (tests/test_numerics.py checks the tails).
    big = expected > 1e-8
    np.testing.assert_allclose(np.exp(log_p[big]), expected[big], rtol=2e-4)
    assert np.all(np.isfinite(log_p))


@pytest.mark.backend
def test_discretized_logistic_layout_per_image():
    """Params hold the C means first, then the C log-scales; the NLL sums pixels and channels."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(2, 3, 3, 3)).astype(np.float32) / 255
    params = np.concatenate([rng.uniform(-1, 1, (2, 3, 3, 3)), rng.uniform(-4, 0, (2, 3, 3, 3))], -1).astype("float32")
    expected = np.zeros(2)
    for n, i, j, c in np.ndindex(2, 3, 3, 3):
        level = round(float(x[n, i, j, c]) * 255)
        expected[n] -= math.log(np_logistic_bins(params[n, i, j, c], params[n, i, j, 3 + c])[level])
    np.testing.assert_allclose(to_np(L.DiscretizedLogistic().nll(x, params)), expected, rtol=1e-3)


@pytest.mark.backend
def test_rgb_coupling_is_a_chain_of_discretized_logistics():
    """Each channel is a discretized logistic whose mean moves with the channels before it (on
    the [−1, 1] scale, by tanh of the coefficient maps): checked bin by bin against NumPy. With
    zero coefficients it is the uncoupled likelihood; and coupling pays off on a grey-ish photo,
    whose channels move together."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(2, 3, 3, 3)).astype(np.float32) / 255
    mean, log_scale, raw = (rng.uniform(lo, hi, (2, 3, 3, 3)) for lo, hi in ((-0.5, 0.5), (-2, 0), (-1, 1)))
    params = np.concatenate([mean, log_scale, raw], -1).astype("float32")
    a, b, c = np.tanh(raw[..., 0]), np.tanh(raw[..., 1]), np.tanh(raw[..., 2])
    y = 2 * np.round(x * 255) / 255 - 1
    shifted = mean.copy()
    shifted[..., 1] += a * y[..., 0]
    shifted[..., 2] += b * y[..., 0] + c * y[..., 1]
    expected = np.zeros(2)
    for n, i, j, ch in np.ndindex(2, 3, 3, 3):
        level = round(float(x[n, i, j, ch]) * 255)
        expected[n] -= math.log(np_logistic_bins(shifted[n, i, j, ch], log_scale[n, i, j, ch])[level])
    coupled = L.DiscretizedLogisticRGB()
    np.testing.assert_allclose(to_np(coupled.nll(x, params)), expected, rtol=1e-4)
    uncoupled = np.concatenate([mean, log_scale, np.zeros_like(raw)], -1).astype("float32")
    np.testing.assert_allclose(
        to_np(coupled.nll(x, uncoupled)), to_np(L.DiscretizedLogistic().nll(x, uncoupled[..., :6])), rtol=1e-6
    )
    np.testing.assert_allclose(to_np(coupled.mean(uncoupled)), to_np(L.DiscretizedLogistic().mean(uncoupled[..., :6])))
    # Grey-ish pixels (G = B = R ± a level): a decoder that knows only the brightness roughly
    # pays for it in all three channels uncoupled, mostly once coupled.
    red = rng.integers(20, 236, size=(4, 8, 8, 1))
    grey = (np.concatenate([red, red + 1, red - 1], -1) / 255).astype(np.float32)
    rough = np.full_like(grey, 0.0)
    narrow = np.full_like(grey, -4.0)
    free = np.concatenate([rough, np.full_like(grey, -1.0), np.zeros_like(grey)], -1)
    follow = np.concatenate(
        [rough, np.concatenate([grey[..., :1] * 0 - 1.0, narrow[..., 1:]], -1), np.zeros_like(grey)], -1
    )
    follow[..., 6] = 20.0  # green follows red exactly (tanh → 1)
    follow[..., 8] = 20.0  # blue follows green
    assert float(np.mean(to_np(coupled.nll(grey, follow)))) < 0.7 * float(np.mean(to_np(coupled.nll(grey, free))))


def test_choose_likelihood_from_the_data():
    grey = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 1)).astype(np.float32) / 255
    binary = (grey > 0.5).astype(np.float32)
    continuous = grey + np.float32(0.3 / 255)
    assert L.choose_likelihood("auto", binary, False) == "bernoulli"
    assert L.choose_likelihood("auto", grey, True) == "bernoulli"
    assert L.choose_likelihood("auto", grey, False) == "discretized_logistic"
    assert L.choose_likelihood("auto", continuous, False) == "continuous_bernoulli"
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 5, 3)).astype(np.uint8)
    assert L.choose_likelihood("auto", rgb, False) == "discretized_logistic_rgb"
    assert L.choose_likelihood("discretized_logistic", rgb, False) == "discretized_logistic"
    with pytest.raises(
        DataError, match=r"^model.likelihood: discretized_logistic_rgb couples 3 colour channels.*have 1"
    ):
        L.choose_likelihood("discretized_logistic_rgb", grey, False)
    assert L.choose_likelihood("bernoulli", grey, True) == "bernoulli"
    with pytest.raises(DataError, match=r"^model.likelihood: bernoulli needs binary pixels.*dynamic_binarization"):
        L.choose_likelihood("bernoulli", grey, False)
    with pytest.raises(DataError, match="continuous_bernoulli"):
        L.choose_likelihood("discretized_logistic", continuous, False)
    assert L.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_bernoulli_on_grey_data_is_refused_before_training(tiny_config, tiny_splits):
    with pytest.raises(DataError) as err:
        train(tiny_config(model={"likelihood": "bernoulli"}), tiny_splits)
    assert "\n" not in str(err.value) and "data.dynamic_binarization: true" in str(err.value)


def test_auto_trains_grey_mnist_with_a_discretized_logistic(tiny_config, tiny_splits):
    result = train(tiny_config(), tiny_splits)
    assert result.config.model.likelihood == "discretized_logistic"
    assert result.model.likelihood.name == "discretized_logistic"
    assert math.isfinite(result.val_elbo) and result.val_elbo < 0  # a discrete NLL is ≥ 0
    images = tiny_splits.val[:16]
    report = evaluate(result.model, images, k=4)
    assert report.likelihood == "discretized_logistic"
    assert report.nll_iwae is not None
    assert report.bits_per_dim == pytest.approx(report.nll_iwae / (784 * math.log(2)))
    # The IWAE estimate scores with the same likelihood as the model's ELBO (k = 1, averaged).
    k1 = iwae_nll(result.model, np.repeat(images, 20, axis=0), k=1).mean()
    assert -k1 == pytest.approx(report.elbo, abs=0.05 * abs(report.elbo) + 3)
    binary = train(tiny_config(data={"dynamic_binarization": True}), tiny_splits)
    assert binary.config.model.likelihood == "bernoulli"
    assert evaluate(binary.model, images, k=0).bits_per_dim is None


def test_auto_configs_restore_with_the_likelihood_they_trained_with(tiny_config, tiny_splits, tmp_path):
    """A study stores its trial's config before training (likelihood "auto"); the report and
    `tuner evaluate` rebuild the model from it and the weights: the decoder width decides."""
    from tuner.config import dump_config
    from tuner.vae.saving import load_run, restore_model, save_run

    auto = tiny_config()
    trained = train(auto, tiny_splits)  # discretized logistic on grey MNIST
    trained.model.save_weights(tmp_path / "w.weights.h5")
    model = restore_model(auto, tiny_splits.image_shape, trained.steps_per_epoch, tmp_path / "w.weights.h5")
    assert model.likelihood.name == "discretized_logistic"
    # A run saved before likelihoods existed: "auto" in its file, Bernoulli weights, grey data.
    legacy = train(tiny_config(data={"dynamic_binarization": True}), tiny_splits)
    save_run(legacy, tmp_path / "old")
    dump_config(auto, tmp_path / "old" / "config.yaml")
    config, model, _ = load_run(tmp_path / "old", tiny_splits)
    assert model.likelihood.name == "bernoulli" and config.model.likelihood == "bernoulli"
    expected = keras.ops.convert_to_numpy(legacy.model.encoder(tiny_splits.val[:4]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.encoder(tiny_splits.val[:4])), expected, rtol=1e-5)


def test_the_config_offers_exactly_the_likelihoods_that_exist():
    from typing import get_args

    from tuner.config import ModelConfig

    offered = set(get_args(ModelConfig.model_fields["likelihood"].annotation)) - {"auto"}
    assert offered == set(L.NAMES)


@pytest.mark.parametrize(
    "name", ["bernoulli", "continuous_bernoulli", "discretized_logistic", "discretized_logistic_rgb"]
)
def test_each_likelihood_mean_is_the_same_in_numpy_and_keras_ops(name):
    likelihood = L.get_likelihood(name)
    channels = 3
    shape = (2, 4, 4, channels * likelihood.params_per_channel)
    params = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    params[0, 0, 0, :3] = [1e-4, 1e-3, 2e-2]  # the continuous Bernoulli near 0, where its terms cancel
    expected = keras.ops.convert_to_numpy(likelihood.mean(keras.ops.convert_to_tensor(params)))
    got = likelihood.mean(params, xp=np)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0
    if name == "continuous_bernoulli":  # against float64
        l64 = params.astype(np.float64)
        np.testing.assert_allclose(got, np.where(l64 == 0, 0.5, 1 / (1 - np.exp(-l64)) - 1 / l64), atol=1e-5)
