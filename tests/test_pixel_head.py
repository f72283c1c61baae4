"""The pixel head of the pixelcnn_* likelihoods: causal, a true likelihood, decoded as trained."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from tuner.vae import likelihoods as L
from tuner.vae.pixel_head import build_pixel_head, causal_mask, decode_greedy

SHAPE = (6, 7, 3)


def _random_head(seed: int = 0) -> keras.Model:
    """A head whose every weight is random (a fresh one starts with its last layer at zero)."""
    head = build_pixel_head(SHAPE, 9)
    rng = np.random.default_rng(seed)
    head.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in head.get_weights()])
    return head


def _levels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, *SHAPE)).astype(np.float32) / 255.0


def test_the_mask_hides_the_centre_and_what_follows_it():
    mask = causal_mask(5)[:, :, 0, 0]
    assert mask[:2].all() and mask[2, :2].all()
    assert not mask[2, 2:].any() and not mask[3:].any()


@pytest.mark.backend
def test_a_pixel_changes_only_the_parameters_of_pixels_after_it():
    head = _random_head()
    rng = np.random.default_rng(1)
    params = rng.normal(size=(1, *SHAPE[:2], 9)).astype(np.float32)
    x = _levels(rng, 1)
    changed = x.copy()
    changed[0, 3, 4] = 1.0 - changed[0, 3, 4]
    before = ops.convert_to_numpy(head([params, x]))[0]
    after = ops.convert_to_numpy(head([params, changed]))[0]
    moved = np.abs(before - after).max(axis=-1) > 1e-6
    order = np.arange(SHAPE[0] * SHAPE[1]).reshape(SHAPE[:2])
    assert not moved[order <= order[3, 4]].any()  # the pixel itself and everything before it
    assert moved[3, 5] and moved[4, 2] and moved[5, 6]  # right of it, and below within 2 pixels
    assert not moved[4, 0]  # outside the 5 × 5 window


def test_an_untrained_head_is_the_plain_decoder():
    head = build_pixel_head(SHAPE, 9)
    params = np.random.default_rng(2).normal(size=(2, *SHAPE[:2], 9)).astype(np.float32)
    out = ops.convert_to_numpy(head([params, _levels(np.random.default_rng(3), 2)]))
    np.testing.assert_allclose(out, params, atol=1e-6)


@pytest.mark.backend
@pytest.mark.parametrize("name", ["pixelcnn_logistic_rgb", "pixelcnn_logistic"])
def test_greedy_decoding_is_a_fixed_point_of_the_trained_head(name):
    """Each decoded pixel is the rounded mean of the head's parameters given the decoded pixels
    before it: fed back through the Keras head in one parallel pass, the NumPy decoding must
    give itself again (the two implementations agree)."""
    likelihood = L.get_likelihood(name)
    channels = 3
    n_params = channels * likelihood.params_per_channel
    head = build_pixel_head(SHAPE, n_params)
    rng = np.random.default_rng(4)
    head.set_weights([rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in head.get_weights()])
    params = rng.normal(0.0, 0.5, (3, *SHAPE[:2], n_params)).astype(np.float32)
    decoded = decode_greedy(head, params, lambda p: likelihood.mean(p, np), channels)
    assert decoded.shape == (3, *SHAPE) and decoded.min() >= 0.0 and decoded.max() <= 1.0
    again = ops.convert_to_numpy(likelihood.mean(head([params, decoded])))
    np.testing.assert_allclose(np.round(again * 255.0) / 255.0, decoded, atol=1.5 / 255.0)
    assert np.mean(np.abs(np.round(again * 255.0) / 255.0 - decoded) > 0.5 / 255.0) < 0.01  # rounding ties only


def test_the_head_keeps_each_pixel_a_distribution_over_256_levels():
    """Given the pixels before it, one pixel's 256 probabilities sum to 1 (per channel, in
    coupled order): the product over pixels is then a normalized likelihood."""
    head = _random_head(5)
    rng = np.random.default_rng(6)
    params = rng.normal(0.0, 0.5, (1, *SHAPE[:2], 9)).astype(np.float32)
    x = np.repeat(_levels(rng, 1), 256, axis=0)
    levels = np.arange(256, dtype=np.float32) / 255.0
    x[:, 2, 3, 0] = levels  # red of pixel (2, 3) takes every level, all else fixed
    out = ops.convert_to_numpy(head([np.repeat(params, 256, axis=0), x]))
    mean, log_scale, coeffs = np.split(out[:, 2, 3], 3, axis=-1)
    assert np.allclose(mean, mean[:1], atol=1e-5)  # the pixel's own value never reaches its parameters
    log_p = ops.convert_to_numpy(L.discretized_logistic_log_probs(levels, mean[:, 0], log_scale[:, 0]))
    assert float(np.exp(log_p).sum()) == pytest.approx(1.0, abs=1e-4)


def test_the_pixel_head_is_asked_for_and_checked_like_its_plain_likelihood():
    rgb = np.random.default_rng(7).integers(0, 256, (4, 5, 5, 3)).astype(np.uint8)
    grey = rgb[..., :1]
    assert L.choose_likelihood("auto", rgb, False) == "discretized_logistic_rgb"  # never auto's choice
    assert L.choose_likelihood("pixelcnn_logistic_rgb", rgb, False) == "pixelcnn_logistic_rgb"
    assert L.choose_likelihood("pixelcnn_logistic", grey, False) == "pixelcnn_logistic"
    with pytest.raises(L.DataError, match=r"^model.likelihood: pixelcnn_logistic_rgb couples 3 .*pixelcnn_logistic$"):
        L.choose_likelihood("pixelcnn_logistic_rgb", grey, False)
    with pytest.raises(L.DataError, match=r"^model.likelihood: pixelcnn_logistic needs 8-bit pixels"):
        L.choose_likelihood("pixelcnn_logistic", grey.astype(np.float32) / 255 + 0.3 / 255, False)


def test_a_model_with_a_pixel_head_trains_saves_and_restores(tmp_path, tiny_config):
    from tuner.vae.data import Splits
    from tuner.vae.evaluation import estimate_elbo
    from tuner.vae.saving import load_run, save_run
    from tuner.vae.training import train

    rng = np.random.default_rng(8)
    base = rng.integers(0, 256, (96, 1, 1, 3))
    images = np.clip(base + rng.integers(-20, 21, (96, 8, 8, 3)), 0, 255).astype(np.float32) / 255.0
    splits = Splits(train=images[:64], val=images[64:], test=images[64:])
    model = {"filters": [8], "latent_dim": 2, "likelihood": "pixelcnn_logistic_rgb"}
    result = train(tiny_config(model=model, training={"epochs": 3, "batch_size": 16}), splits)
    assert result.config.model.likelihood == "pixelcnn_logistic_rgb"
    assert result.model.pixel_head is not None
    assert np.isfinite(result.val_elbo)
    recon = ops.convert_to_numpy(result.model.reconstruct(splits.val[:4]))
    assert recon.shape == (4, 8, 8, 3)
    run_dir = save_run(result, tmp_path / "run")
    _, restored, _ = load_run(run_dir, splits)
    assert restored.pixel_head is not None
    before, after = (estimate_elbo(m, splits.val, seed=0).elbo for m in (result.model, restored))
    assert after == pytest.approx(before, abs=1e-3)
