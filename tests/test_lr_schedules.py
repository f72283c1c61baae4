"""Learning-rate schedules (formulas, round trips, the optimizer sees them) and early stopping."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tuner.config import TrainingConfig
from tuner.vae.lr_schedules import ConstantLR, CosineLR, StepDecayLR, build_lr_schedule
from tuner.vae.training import EpochRecorder, train


def test_cosine_formula():
    schedule = CosineLR(1e-3, total_steps=110, warmup_steps=10, min_ratio=0.1)
    values = schedule.values(200)
    expected = [1e-3 * min(1, (t + 1) / 10) for t in range(10)]
    expected += [1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1, (t - 10) / 100)))) for t in range(10, 200)]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
    assert (
        values[9] == pytest.approx(1e-3) and values[110] == pytest.approx(1e-4) and values[199] == pytest.approx(1e-4)
    )
    tensor = keras.ops.convert_to_numpy(schedule(np.arange(200)))
    np.testing.assert_allclose(tensor, values, rtol=1e-5)


def test_step_decay_is_burda_et_al():
    """First stage 1 epoch, each stage 3 times longer, lr 1e-3·10^(−i/7) in stage i."""
    steps_per_epoch = 5
    schedule = StepDecayLR(1e-3, first_stage_steps=steps_per_epoch)
    epochs = np.arange(3280)
    stage_of_epoch = np.searchsorted(np.cumsum([3**i for i in range(9)]), epochs, side="right")
    expected = 1e-3 * 10 ** (-stage_of_epoch / 7)
    steps = epochs * steps_per_epoch
    np.testing.assert_allclose(schedule.values(steps), expected, rtol=1e-9)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(schedule(steps)), expected, rtol=1e-5)
    assert schedule.values([0, 4, 5, 19, 20])[[0, 1, 2, 3, 4]] == pytest.approx(
        [1e-3, 1e-3, 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-2 / 7)]
    )
    linear = StepDecayLR(1.0, first_stage_steps=4, growth=1.0, decay=0.5)
    assert list(linear.values(12)) == [1.0] * 4 + [0.5] * 4 + [0.25] * 4


@pytest.mark.parametrize(
    "schedule",
    [ConstantLR(3e-4), CosineLR(1e-3, 100, 5, 0.2), StepDecayLR(1e-3, 7, 2.0, 0.5)],
    ids=lambda s: s.name,
)
def test_round_trip(schedule):
    again = type(schedule).from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    np.testing.assert_array_equal(again.values(300), schedule.values(300))
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    np.testing.assert_array_equal(restored.values(300), schedule.values(300))


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="warmup_steps"):
        CosineLR(1e-3, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="learning_rate"):
        ConstantLR(0.0)
    with pytest.raises(ValueError, match="decay"):
        StepDecayLR(1e-3, 5, decay=1.5)


def test_build_from_config_in_epochs():
    config = TrainingConfig(lr_schedule="cosine", lr_warmup_epochs=2, epochs=10, learning_rate=2e-3)
    schedule = build_lr_schedule(config, steps_per_epoch=4, epochs=10)
    assert isinstance(schedule, CosineLR) and schedule.get_config()["warmup_steps"] == 8
    assert schedule.total_steps == 40
    step = build_lr_schedule(TrainingConfig(lr_schedule="step_decay", lr_stage_epochs=2), 4, 10)
    assert isinstance(step, StepDecayLR) and step.first_stage_steps == 8


def test_the_optimizer_follows_the_schedule(tiny_config, tiny_splits):
    config = tiny_config(
        training={"epochs": 2, "lr_schedule": "step_decay", "lr_stage_epochs": 1, "lr_stage_growth": 1, "lr_decay": 0.5}
    )
    result = train(config, tiny_splits)
    lr = float(keras.ops.convert_to_numpy(result.model.optimizer.learning_rate))
    assert lr == pytest.approx(config.training.learning_rate * 0.25)  # after 2 stages of 1 epoch


class _FakeValElbo(keras.callbacks.Callback):
    """Overwrites val_elbo before the other callbacks see it, so the test knows the best epoch."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.weights_at: list[np.ndarray] = []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_elbo"] = self.values[epoch]
        self.weights_at.append(self.model.encoder.get_weights()[0].copy())


def test_early_stopping_restores_the_best_weights(tiny_config, tiny_splits, monkeypatch):
    fake = _FakeValElbo([-300.0, -200.0, -250.0, -260.0, -100.0, -50.0])
    # Put the fake first, so EarlyStopping and the recorder read the faked values.
    original = EpochRecorder.on_epoch_end

    def recorder_end(self, epoch, logs=None):
        fake.set_model(self.model)
        fake.on_epoch_end(epoch, logs)
        original(self, epoch, logs)

    monkeypatch.setattr(EpochRecorder, "on_epoch_end", recorder_end)
    result = train(tiny_config(training={"epochs": 6, "patience": 2}), tiny_splits)
    assert len(result.history) == 4  # epochs 3 and 4 did not beat epoch 2: stopped
    assert result.val_elbo == -200.0
    np.testing.assert_array_equal(result.model.encoder.get_weights()[0], fake.weights_at[1])
    assert not np.array_equal(result.model.encoder.get_weights()[0], fake.weights_at[-1])
