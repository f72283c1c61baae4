"""Model, loss and training tests. They run on the active backend; test_backends.py reruns
the ``backend``-marked ones under JAX when the suite runs under TensorFlow (the others check
logic that no backend changes: the diagnosis, and how evaluation batches its draws)."""

import math

import keras
import numpy as np
import pytest

from tuner.errors import DivergenceError
from tuner.vae.diagnosis import diagnose
from tuner.vae.evaluation import iwae_nll
from tuner.vae.model import VAE, bernoulli_nll, gaussian_kl
from tuner.vae.schedules import LinearWarmup
from tuner.vae.training import train


def np_bernoulli_nll(x, logits):
    p = 1 / (1 + np.exp(-logits))
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(-1)


@pytest.mark.backend
def test_loss_terms_match_numpy(random_images):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=random_images.shape).astype(np.float32) * 3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bernoulli_nll(random_images, logits)),
        np_bernoulli_nll(random_images.astype(np.float64), logits.astype(np.float64)),
        rtol=1e-4,
    )
    mean, log_var = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    expected_kl = 0.5 * (np.exp(log_var) + mean**2 - 1 - log_var)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gaussian_kl(mean, log_var)), expected_kl, rtol=1e-5)


@pytest.mark.backend
def test_elbo_and_loss_from_one_forward_pass(random_images):
    """recon, KL and the β-weighted loss of the model against NumPy on the same sample."""
    model = VAE((28, 28, 1), latent_dim=3, filters=[4, 8], schedule=LinearWarmup(2.0, 10), seed=3)
    out = model(random_images, training=False)
    stats = keras.ops.convert_to_numpy(model.encoder(random_images)).astype(np.float64)
    mean, log_var = stats[:, :3], stats[:, 3:]
    kl = (0.5 * (np.exp(log_var) + mean**2 - 1 - log_var)).sum(-1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out["kl"]), kl, rtol=1e-4, atol=1e-7
    )  # KL ~1e-4: cancellation
    assert np.all(keras.ops.convert_to_numpy(out["beta"]) == 1.0)  # evaluation: β = 1
    # The loss weights the KL with the β of the current step.
    model.beta_step.assign(5)
    out = model(random_images, training=True)
    beta = 2.0 * 5 / 10
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["beta"]), beta, rtol=1e-6)
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(y_pred=out)))
    recon, kl = (keras.ops.convert_to_numpy(out[k]).astype(np.float64) for k in ("recon", "kl"))
    assert loss == pytest.approx(recon.mean() + beta * kl.mean(), rel=1e-5)
    assert int(keras.ops.convert_to_numpy(model.beta_step)) == 6  # the step advanced


@pytest.mark.backend
def test_free_bits_floor_each_dimension(random_images):
    model = VAE((28, 28, 1), latent_dim=3, filters=[4, 8], free_bits=5.0)
    out = model(random_images, training=False)
    per_dim = keras.ops.convert_to_numpy(out["kl_per_dim"]).astype(np.float64).mean(0)
    recon = keras.ops.convert_to_numpy(out["recon"]).astype(np.float64).mean()
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(y_pred=out)))
    assert loss == pytest.approx(recon + np.maximum(per_dim, 5.0).sum(), rel=1e-5)


def test_training_improves_val_elbo_and_beta_follows_schedule(tiny_config, tiny_splits):
    config = tiny_config(schedule={"name": "linear", "max_beta": 2.0, "anneal_epochs": 1}, training={"epochs": 2})
    result = train(config, tiny_splits)
    first, last = result.history
    assert last["val_elbo"] > first["val_elbo"] + 5
    steps = result.steps_per_epoch
    # β seen by the loss, averaged in-graph over the epoch's batches (all of one size, see
    # vae/batches.py), equals the schedule's mean over the epoch's steps.
    assert steps == 4
    assert first["beta"] == pytest.approx(result.schedule.values(steps).mean(), rel=1e-5)
    assert last["beta"] == pytest.approx(2.0) and first["beta_end"] == pytest.approx(2.0)
    assert int(keras.ops.convert_to_numpy(result.model.beta_step)) == 2 * steps
    # The learning rate is untouched: β is not smuggled in through a LR scheduler.
    lr = float(keras.ops.convert_to_numpy(result.model.optimizer.learning_rate))
    assert lr == pytest.approx(config.training.learning_rate)


def test_beta_changes_the_loss(tiny_config, tiny_splits):
    """Same seed, different β: the training loss differs by exactly β·KL at the first step."""
    losses = {}
    for beta in (0.0, 4.0):
        result = train(tiny_config(schedule={"max_beta": beta}), tiny_splits)
        losses[beta] = result.history[0]
    assert losses[0.0]["loss"] == pytest.approx(losses[0.0]["recon"], rel=1e-5)
    assert losses[4.0]["loss"] == pytest.approx(losses[4.0]["recon"] + 4.0 * losses[4.0]["kl"], rel=1e-4)
    assert losses[4.0]["kl"] < losses[0.0]["kl"]


@pytest.mark.backend
def test_same_seed_same_val_elbo(tiny_config, tiny_splits):
    a = train(tiny_config(), tiny_splits).val_elbo
    b = train(tiny_config(), tiny_splits).val_elbo
    assert abs(a - b) < 1e-3


def test_diverging_learning_rate_raises(tiny_config, tiny_splits):
    with pytest.raises(DivergenceError, match=r"at step \d+ with learning rate 100;"):
        train(tiny_config(training={"learning_rate": 100.0, "epochs": 2}), tiny_splits)


def test_dynamic_binarization_trains(tiny_config, tiny_splits):
    result = train(tiny_config(data={"dynamic_binarization": True}), tiny_splits)
    assert math.isfinite(result.val_elbo)


def test_iwae_bound(tiny_config, tiny_splits):
    result = train(tiny_config(training={"epochs": 2}), tiny_splits)
    images = tiny_splits.val[:64]
    elbo = -float(keras.ops.convert_to_numpy(result.model(images)["recon"] + result.model(images)["kl"]).mean())
    # k = 1 is an unbiased estimate of the ELBO: average 20 draws per image, drawn in one
    # call (each repeated image gets its own sample) so that one program is compiled.
    k1 = iwae_nll(result.model, np.repeat(images, 20, axis=0), k=1).mean()
    assert -k1 == pytest.approx(elbo, abs=3.0)
    nll = [iwae_nll(result.model, images, k=k, chunk=16).mean() for k in (1, 8, 64)]
    assert nll[0] >= nll[1] - 0.5 >= nll[2] - 1.0  # the bound tightens as k grows
    assert nll[2] < -elbo


def test_diagnosis_names_collapse():
    assert "Posterior collapse" in diagnose(recon=200.0, kl=0.1, active_units=0, latent_dim=16)[0]
    assert "Under-regularised" in " ".join(diagnose(recon=20.0, kl=60.0, active_units=16, latent_dim=16))
    assert diagnose(recon=80.0, kl=25.0, active_units=12, latent_dim=16)[0].startswith("Healthy")
    # Few active units of a large latent space, but 25 nats of KL: pruned units, not a collapse.
    notes = diagnose(recon=65.0, kl=25.0, active_units=12, latent_dim=128)
    assert not any(note.startswith("Posterior collapse") for note in notes) and notes[0].startswith("Unused capacity")
    assert "Posterior collapse" in diagnose(recon=65.0, kl=3.0, active_units=2, latent_dim=128)[0]
    assert "Posterior collapse" in diagnose(recon=65.0, kl=0.5, active_units=12, latent_dim=16)[0]


def test_bounded_evaluation_gives_the_same_nll(tiny_config, tiny_splits, monkeypatch):
    """A memory bound changes only how images are batched, never the draws: same NLL. The
    last, shorter batch is padded, so that every call of a chunk size has one shape."""
    from tuner.vae import evaluation
    from tuner.vae.evaluation import bytes_per_decoded_row, rows_for_memory

    model = train(tiny_config(), tiny_splits).model
    images = tiny_splits.val[:11]
    unbounded = iwae_nll(model, images, k=20, chunk=8, max_memory=None)
    tight_gb = 3 * 8 * bytes_per_decoded_row(model) / 2**30  # three images per decoder call: 3, 3, 3, 2
    assert rows_for_memory(model, tight_gb) // 8 == 3
    shapes = set()
    call = evaluation._ChunkLogWeights.call

    def recording_call(self, i):
        shapes.add(tuple(i[1].shape))
        return call(self, i)

    monkeypatch.setattr(evaluation._ChunkLogWeights, "call", recording_call)
    progress = []
    bounded = iwae_nll(model, images, k=20, chunk=8, max_memory=tight_gb, on_progress=lambda d, k: progress.append(d))
    np.testing.assert_allclose(bounded, unbounded, rtol=1e-5, atol=1e-4)
    # After every batch of images: image-samples scored so far, chunk by chunk (sizes 8, 8, 4).
    n_images = len(images)
    assert n_images == 11
    expected = [offset * n_images + end * size for offset, size in ((0, 8), (8, 8), (16, 4)) for end in (3, 6, 9, 11)]
    assert progress == expected and progress[-1] == 20 * n_images
    assert {shape[0] for shape in shapes} == {3}  # the last batch of two images came padded
    assert not np.allclose(iwae_nll(model, images, k=20, chunk=8, seed=1), unbounded, atol=1e-3)  # seeds matter
    with pytest.raises(ValueError, match="max_memory"):
        iwae_nll(model, images, k=2, max_memory=0)


def test_auto_batch_size_gives_small_sets_enough_steps(tiny_config, tiny_splits):
    from tuner.vae.batches import MIN_STEPS_PER_EPOCH, auto_batch_size

    # 128 from 3,200 images up; below, the largest power of two with 25 steps an epoch, >= 16.
    expected = {60_000: 128, 3_200: 128, 3_199: 64, 1_600: 64, 861: 32, 800: 32, 799: 16, 256: 16, 1: 16}
    assert {n: auto_batch_size(n) for n in expected} == expected
    for n in range(16 * MIN_STEPS_PER_EPOCH, 4_000, 37):
        batch = auto_batch_size(n)
        assert n // batch >= MIN_STEPS_PER_EPOCH and (batch == 128 or n // (2 * batch) < MIN_STEPS_PER_EPOCH)
    # Training resolves it, and the config it returns (the one saved) names the size used.
    result = train(tiny_config(training={"batch_size": "auto", "epochs": 1}), tiny_splits)
    assert result.config.training.batch_size == 16 and result.steps_per_epoch == len(tiny_splits.train) // 16
    assert train(tiny_config(training={"epochs": 1}), tiny_splits).steps_per_epoch == len(tiny_splits.train) // 64
