"""What keeps a trial's compiled programs few and reusable, and fast on an accelerator:
equal-size training batches, β's numbers as variables, fused steps on JAX, float16 with loss
scaling, and JAX's persistent cache across trials."""

import json
import math
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from typing import Any

import keras
import numpy as np
import pytest

from tuner.vae.batches import TrainBatches, steps_per_epoch, validation_batch_size
from tuner.vae.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_batches_are_full_and_reshuffled_each_epoch():
    images = np.arange(250, dtype="float32").reshape(250, 1, 1, 1)
    batches = TrainBatches(images, batch_size=64, seed=3)
    assert len(batches) == steps_per_epoch(250, 64) == 3
    epochs = []
    for _ in range(3):
        rows = np.concatenate([batches[i][0].ravel() for i in range(len(batches))])
        assert all(batches[i][0].shape == (64, 1, 1, 1) for i in range(len(batches)))
        assert len(np.unique(rows)) == 192  # no image twice in an epoch; 58 left for later
        epochs.append(set(rows.tolist()))
        batches.on_epoch_end()
    assert epochs[0] != epochs[1] != epochs[2]
    again = TrainBatches(images, batch_size=64, seed=3)
    np.testing.assert_array_equal(again[0][0], TrainBatches(images, batch_size=64, seed=3)[0][0])
    # Fewer images than one batch: one batch of all of them.
    small = TrainBatches(images[:10], batch_size=64)
    assert len(small) == 1 and small[0][0].shape[0] == 10


@pytest.mark.parametrize(
    "n, preferred, expected",
    [(10_000, 500, 500), (512, 500, 256), (128, 500, 128), (997, 500, 500), (1000, 512, 500)],
)
def test_validation_batches_share_one_size_when_a_divisor_allows(n, preferred, expected):
    assert validation_batch_size(n, preferred) == expected


@pytest.mark.backend
def test_schedule_numbers_are_read_at_run_time(tiny_config, tiny_splits):
    """The compiled step reads max_beta etc. from a variable: new numbers, same program."""
    result = train(tiny_config(schedule={"name": "linear", "max_beta": 1.0, "anneal_epochs": 1}), tiny_splits)
    model, compiled = result.model, result.model.train_function
    assert list(result.schedule.get_config()) == ["max_beta", "warmup_steps", "beta_start"]
    model.loss_params.assign([0.0, 3.0, 4.0, 3.0])  # free_bits, then β held at 3 from step 0
    history = model.fit(TrainBatches(tiny_splits.train, 64), epochs=1, verbose=0).history
    assert model.train_function is compiled
    assert history["beta"][-1] == pytest.approx(3.0)
    assert history["loss"][-1] == pytest.approx(history["recon"][-1] + 3.0 * history["kl"][-1], rel=1e-4)


def jax_only(*values):
    """Parameters that only differ from the default on JAX (no-ops on TensorFlow): they run
    in the JAX rerun of the backend tests (test_backends.py)."""
    on_tf = keras.backend.backend() != "jax"
    return pytest.param(*values, marks=pytest.mark.skipif(on_tf, reason="a JAX-only option; runs under JAX"))


_SINGLE_STEPS: dict[str, Any] = {}  # the reference run, trained once for every parametrization


@pytest.mark.backend
@pytest.mark.parametrize("fused, on_device", [(False, False), jax_only(True, False), jax_only(True, True)])
def test_steps_per_execution_trains_exactly_like_single_steps(tiny_config, tiny_splits, fused, on_device):
    # 256 images / 64 = 4 steps per epoch: one execution of 3 steps, then one holding a
    # single step (padded when fused on JAX, where the steps run in one lax.scan).
    if "run" not in _SINGLE_STEPS:
        _SINGLE_STEPS["run"] = train(tiny_config(training={"epochs": 2}), tiny_splits)
    single = _SINGLE_STEPS["run"]
    options = {"steps_per_execution": 3, "fused_steps": fused, "data_on_device": on_device}
    multi = train(tiny_config(training={"epochs": 2, **options}), tiny_splits)
    for result in (single, multi):
        assert int(keras.ops.convert_to_numpy(result.model.beta_step)) == 8
    assert multi.val_elbo == pytest.approx(single.val_elbo, abs=1e-3)
    assert multi.history[-1]["loss"] == pytest.approx(single.history[-1]["loss"], rel=1e-4)
    scanned = "ScanTrainSteps" in multi.model.train_function.__qualname__
    assert scanned == (fused and keras.backend.backend() == "jax")


@pytest.mark.backend
def test_fused_steps_auto_is_on_only_where_jax_runs_on_an_accelerator(tiny_config, tiny_splits, monkeypatch):
    from tuner.vae.scan_steps import resolve_fused_steps

    assert tiny_config().training.fused_steps == "auto"
    assert resolve_fused_steps(True) is True and resolve_fused_steps(False) is False
    assert resolve_fused_steps("auto") is False  # this machine: a CPU, or TensorFlow
    if keras.backend.backend() == "jax":
        import jax

        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
        assert resolve_fused_steps("auto") is True
        result = train(tiny_config(training={"epochs": 1, "steps_per_execution": 2}), tiny_splits)
        assert "ScanTrainSteps" in result.model.train_function.__qualname__


@pytest.mark.backend
def test_batches_on_the_device(tiny_splits):
    batch = TrainBatches(tiny_splits.train, 64, on_device=True)[0][0]
    on_jax = keras.backend.backend() == "jax"
    assert isinstance(batch, np.ndarray) != on_jax  # TensorFlow keeps NumPy batches
    assert batch.shape == (64, 28, 28, 1)
    # 8-bit images become float32 in the batch: on the device XLA's ÷255 may round one float32
    # ulp away from NumPy's.
    np.testing.assert_allclose(np.asarray(batch), TrainBatches(tiny_splits.train, 64)[0][0], rtol=0, atol=1e-7)


@pytest.mark.backend
def test_float16_mixed_precision_uses_loss_scaling(tiny_config, tiny_splits):
    result = train(tiny_config(training={"epochs": 2, "mixed_precision": "float16"}), tiny_splits)
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert result.model.encoder.layers[1].compute_dtype == "float16"
    assert math.isfinite(result.val_elbo) and result.val_elbo > result.history[0]["val_elbo"]
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


CACHE_PROBE = textwrap.dedent(
    """
    import json, sys
    from tuner.vae import jax_cache
    jax_cache.enable(sys.argv[1])
    import jax
    misses = []
    jax.monitoring.register_event_listener(
        lambda event, **_: misses.append(1) if event == "/jax/compilation_cache/cache_misses" else None)
    from tests.helpers import tiny_config_dict
    from tuner.config import DataConfig, TrainConfig
    from tuner.vae.data import load_splits
    from tuner.vae.training import train
    splits = load_splits(DataConfig(n_train=256, n_val=128))
    counts = []
    for schedule, training, model in [
        ({"name": "linear", "max_beta": 1.0, "anneal_epochs": 1}, {"learning_rate": 1e-3}, {}),
        ({"name": "linear", "max_beta": 4.0, "anneal_epochs": 0.5}, {"learning_rate": 3e-4}, {}),
        ({"name": "linear", "max_beta": 4.0, "anneal_epochs": 0.5}, {}, {"latent_dim": 6}),
    ]:
        before = len(misses)
        train(TrainConfig.model_validate(tiny_config_dict(schedule=schedule, training=training, model=model)), splits)
        counts.append(len(misses) - before)
    print("MISSES " + json.dumps(counts))
    print("TENSORFLOW " + json.dumps("tensorflow" in sys.modules))
    """
)


@pytest.mark.skipif(find_spec("jax") is None, reason="JAX not installed (pip install .[jax])")
def test_jax_trials_differing_in_beta_and_lr_reuse_compiled_programs(tmp_path):
    from tuner.vae import jax_cache

    env = {k: v for k, v in os.environ.items() if k not in jax_cache.settings()}
    env.update(KERAS_BACKEND="jax", PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE, str(tmp_path / "cache")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MISSES ")]
    assert lines, proc.stderr[-3000:]
    first, other_beta, other_latent = json.loads(lines[-1][len("MISSES ") :])
    assert first > 0
    assert other_beta == 0  # every program came from the cache
    assert other_latent > 0  # a new shape is a new program
    # JAX trials never import TensorFlow (Keras's set_random_seed would, for tf.data).
    assert "TENSORFLOW false" in proc.stdout
