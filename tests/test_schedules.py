import math

import numpy as np
import pytest

from tuner.vae import schedules as S

STEPS = np.array([0, 1, 5, 50, 99, 100, 101, 250, 1000], dtype=float)


def test_constant_is_constant():
    np.testing.assert_allclose(S.Constant(0.3).values(STEPS), 0.3, rtol=1e-6)


def test_linear_matches_formula():
    sched = S.LinearWarmup(max_beta=2.0, warmup_steps=100, beta_start=0.5)
    expected = 0.5 + (2.0 - 0.5) * np.minimum(1.0, STEPS / 100)
    np.testing.assert_allclose(sched.values(STEPS), expected, rtol=1e-6)


def test_cyclical_matches_fu_et_al():
    sched = S.Cyclical(max_beta=1.5, total_steps=400, n_cycles=4, ratio=0.5)
    cycle = 100
    tau = np.where(STEPS >= 400, 1.0, (STEPS % cycle) / cycle)
    expected = 1.5 * np.minimum(1.0, tau / 0.5)
    np.testing.assert_allclose(sched.values(STEPS), expected, rtol=1e-5, atol=1e-6)
    # β drops back to 0 at the start of each cycle.
    assert sched.values([100])[0] == 0.0 and sched.values([99])[0] == pytest.approx(1.5)


def test_sigmoid_matches_formula():
    sched = S.Sigmoid(max_beta=4.0, warmup_steps=200, steepness=8.0)
    expected = 4.0 / (1.0 + np.exp(-8.0 * (STEPS / 200 - 0.5)))
    np.testing.assert_allclose(sched.values(STEPS), expected, rtol=1e-5)
    assert sched.values([100])[0] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "schedule",
    [S.Constant(0.7), S.LinearWarmup(1.0, 30, 0.1), S.Cyclical(2.0, 90, 3, 0.25), S.Sigmoid(3.0, 40, 5.0, 0.2)],
)
def test_config_round_trip(schedule):
    clone = type(schedule).from_config(schedule.get_config())
    assert clone == schedule
    np.testing.assert_array_equal(clone.values(STEPS), schedule.values(STEPS))
    assert S.deserialize(S.serialize(schedule)) == schedule


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: S.Constant(-1.0), "max_beta=-1.0"),
        (lambda: S.Constant(math.nan), "max_beta=nan"),
        (lambda: S.LinearWarmup(1.0, 0), "warmup_steps=0"),
        (lambda: S.LinearWarmup(1.0, 10, beta_start=2.0), "beta_start=2.0"),
        (lambda: S.Cyclical(1.0, 100, n_cycles=0), "n_cycles=0"),
        (lambda: S.Cyclical(1.0, 100, ratio=0.0), "ratio=0.0"),
        (lambda: S.Sigmoid(1.0, 10, steepness=-1), "steepness=-1"),
        (lambda: S.deserialize({"name": "cosine"}), "Unknown beta schedule 'cosine'"),
    ],
)
def test_bad_arguments_name_rule_and_value(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build()


def test_from_epochs_converts_to_steps():
    sched = S.from_epochs("linear", max_beta=2.0, steps_per_epoch=10, total_epochs=8, anneal_epochs=3)
    assert sched == S.LinearWarmup(2.0, 30)
    assert S.from_epochs("sigmoid", max_beta=1.0, steps_per_epoch=7, total_epochs=5, anneal_epochs=0) == S.Constant(1.0)
    cyc = S.from_epochs("cyclical", max_beta=1.0, steps_per_epoch=10, total_epochs=8, n_cycles=2)
    assert isinstance(cyc, S.Cyclical)
    assert cyc.total_steps == 80 and cyc.cycle_steps == 40


def test_settled_phase_for_pruning():
    assert not S.LinearWarmup(1.0, 100).is_settled(99) and S.LinearWarmup(1.0, 100).is_settled(100)
    cyc = S.Cyclical(1.0, 200, n_cycles=2, ratio=0.5)
    assert [cyc.is_settled(s) for s in (10, 60, 100, 150, 250)] == [False, True, False, True, True]
    assert S.Constant(1.0).is_settled(0)
