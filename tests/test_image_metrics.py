"""tuner.vae.image_metrics: PSNR, SSIM, sharpness and the bits/dim baselines, on fixed arrays."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tuner.vae import image_metrics as M


def smooth_images(n: int = 4, size: int = 32, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Images with edges and texture (blurred noise plus bars), values in [0, 1]."""
    rng = np.random.default_rng(seed)
    noise = rng.random((n, size, size, channels))
    images = 0.5 * gaussian_filter(noise, sigma=(0, 0.7, 0.7, 0)) + 0.25
    images[:, :, size // 2 :, :] += 0.2  # a vertical edge
    images[:, ::6, :, :] -= 0.15  # horizontal bars
    return np.clip(images, 0, 1)


def blurred(images: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    return gaussian_filter(images, sigma=(0, sigma, sigma, 0))


# --- PSNR ---------------------------------------------------------------------------------------


def test_psnr_of_a_known_error():
    x = np.full((2, 8, 8, 1), 0.5)
    y = x.copy()
    y[0] += 0.1  # MSE 0.01 → 20 dB
    y[1, ::2] += 0.2  # half the pixels off by 0.2: MSE 0.02
    got = M.psnr(x, y)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, [20.0, 10 * np.log10(1 / 0.02)], rtol=1e-12)
    np.testing.assert_allclose(M.psnr(x * 255, y * 255, data_range=255), got, rtol=1e-12)


def test_psnr_matches_the_numpy_formula_and_is_inf_for_identical_images():
    x = smooth_images()
    y = np.clip(x + np.random.default_rng(1).normal(0, 0.05, x.shape), 0, 1)
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
    np.testing.assert_allclose(M.psnr(x, y), 10 * np.log10(1.0 / mse), rtol=1e-12)
    assert np.all(np.isposinf(M.psnr(x, x)))
    assert M.psnr(x[..., 0], y[..., 0]).shape == (4,)  # (N, H, W) grey batches too


def test_shapes_must_match():
    with pytest.raises(ValueError, match="must match"):
        M.psnr(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="expected a batch"):
        M.ssim(np.zeros((8, 8)), np.zeros((8, 8)))


# --- SSIM ---------------------------------------------------------------------------------------


def test_ssim_is_scikit_image_s_per_image():
    from skimage.metrics import structural_similarity

    x = smooth_images()
    y = blurred(x)
    expected = [structural_similarity(a, b, channel_axis=-1, data_range=1.0) for a, b in zip(x, y, strict=True)]
    got = M.ssim(x, y)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.all(got < 0.99)
    np.testing.assert_allclose(M.ssim(x, x), 1.0)
    np.testing.assert_allclose(M.ssim(x[..., :1], x[..., :1]), 1.0)  # one channel


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 7×7"):
        M.ssim(np.zeros((1, 5, 5, 1)), np.zeros((1, 5, 5, 1)))


# --- sharpness ----------------------------------------------------------------------------------


def test_sharpness_ratio_tells_blur_from_noise():
    x = smooth_images()
    np.testing.assert_allclose(M.sharpness_ratio(x, x), 1.0)
    assert np.all(M.sharpness_ratio(x, blurred(x)) < 0.5)
    noisy = x + np.random.default_rng(2).normal(0, 0.05, x.shape)
    assert np.all(M.sharpness_ratio(x, noisy) > 1)
    grey = x[..., 0]
    assert np.all(M.sharpness_ratio(grey, blurred(grey[..., None])[..., 0]) < 0.5)


def test_sharpness_ratio_of_a_constant_input():
    flat = np.full((2, 8, 8, 1), 0.3)
    edge = flat.copy()
    edge[1, :, 4:] = 0.9
    np.testing.assert_array_equal(M.sharpness_ratio(flat, flat), [1.0, 1.0])
    assert M.sharpness_ratio(flat, edge)[1] == np.inf


# --- bits per dimension -------------------------------------------------------------------------


def test_uniform_bits_per_dim():
    assert M.uniform_bits_per_dim() == 8.0


def test_png_bits_per_dim_of_constant_and_of_noise():
    constant = np.full((3, 64, 64, 3), 128, np.uint8)
    assert M.png_bits_per_dim(constant) < 0.1
    noise = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert abs(M.png_bits_per_dim(noise) - 8.0) < 0.2
    grey = np.random.default_rng(1).integers(0, 256, (2, 128, 128), dtype=np.uint8)  # headers: a smaller share
    assert abs(M.png_bits_per_dim(grey) - 8.0) < 0.2
    assert M.png_bits_per_dim(grey[..., None]) == M.png_bits_per_dim(grey)


def test_png_bits_per_dim_needs_uint8():
    with pytest.raises(ValueError, match="uint8"):
        M.png_bits_per_dim(np.zeros((1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="expected a batch"):
        M.png_bits_per_dim(np.zeros((1, 8, 8, 2), np.uint8))


def test_importing_the_module_stays_light():
    code = "import sys, tuner.vae.image_metrics; print(sorted({'skimage', 'keras', 'tensorflow', 'PIL'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
