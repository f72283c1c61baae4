"""The answer to "why is my reconstruction blurry?": which cause the diagnosis names, and the
figures `tuner evaluate` reads it from."""

from __future__ import annotations

import numpy as np

from tuner.vae.diagnosis import BLURRY, blur_notes, diagnose
from tuner.vae.evaluation import evaluate


def test_a_sharp_learned_model_gets_no_blur_note():
    assert blur_notes(0.9, 4.0, 5.0, ["Healthy: ..."]) == []


def test_blur_from_a_high_beta_names_beta():
    diagnosis = diagnose(recon=800.0, kl=0.5, active_units=1, latent_dim=32)  # a collapsed posterior
    (note,) = blur_notes(0.2, 4.0, 5.0, diagnosis)
    assert note.startswith("Blurry: reconstructions keep 20% of the inputs' fine detail")
    assert "β is too high" in note and "lower max_beta" in note


def test_a_model_above_png_has_not_learned_the_images():
    notes = blur_notes(0.3, 6.2, 5.5, ["Healthy: ..."])
    assert notes[0].startswith(
        "Not learned: 6.20 bits per dimension, no better than the same images stored as PNG (5.50)"
    )
    assert "too little training" in notes[1]


def test_blur_with_enough_rate_points_at_the_latent_and_the_likelihood():
    (note,) = blur_notes(BLURRY - 0.1, 4.0, 5.0, ["Healthy: ..."])
    assert "larger latent_dim" in note and "likelihood" in note


def test_evaluate_reports_reconstruction_quality_and_the_png_baseline(tiny_config, tiny_splits):
    from tuner.vae.training import train

    result = train(tiny_config(training={"epochs": 1}), tiny_splits)  # 8-bit grey: discretized logistic
    found = evaluate(result.model, tiny_splits.val[:64], k=0)
    assert found.uniform_bits_per_dim == 8.0 and found.png_bits_per_dim is not None
    assert 0.0 < found.png_bits_per_dim < 8.0  # MNIST digits compress well
    assert found.psnr_db is not None and 0.0 < found.psnr_db < 60.0
    assert found.ssim is not None and -1.0 <= found.ssim <= 1.0
    assert found.sharpness is not None and np.isfinite(found.sharpness) and found.sharpness >= 0.0
    assert not any(note.startswith("Healthy") for note in found.diagnosis) or len(found.diagnosis) == 1
