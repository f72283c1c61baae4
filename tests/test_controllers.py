"""β controllers (ControlVAE, GECO): the laws against hand-computed steps, their bounds, the
in-graph update on both backends, pruning's warm-up rule, the β(t) view, export → train."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from tests.helpers import REPO, tiny_config_dict, tiny_study_dict
from tuner.config import ScheduleConfig, TrainConfig
from tuner.vae.schedules import (
    GECO_FLOOR,
    DistortionController,
    KLController,
    build_schedule,
    deserialize,
    serialize,
)


def sigmoid(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-u))


def test_control_law_matches_hand_computed_steps():
    law = KLController(target=10.0, min_beta=0.0, max_beta=1.0, kp=0.01, ki=0.001)
    # Step 1: KL 20, e = -10: P = 0.01·σ(10), I = 0 + 0.001·10 = 0.01.
    p1, i1 = 0.01 * sigmoid(10.0), 0.01
    # Step 2: KL 5, e = 5: P = 0.01·σ(-5), I = 0.01 − 0.005.
    p2, i2 = 0.01 * sigmoid(-5.0), 0.005
    # Step 3: KL 0, e = 10: I = 0.005 − 0.01 = −0.005 (inside [−Kp, 1]), β = P + I ≥ 0.
    p3, i3 = 0.01 * sigmoid(-10.0), -0.005
    expected = [p1 + i1, p2 + i2, max(0.0, p3 + i3)]
    assert law.simulate([20.0, 5.0, 0.0], [0.0, 0.0, 0.0]) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_relative_control_law_reads_the_error_as_a_fraction_of_the_target():
    law = KLController(target=10.0, min_beta=0.0, max_beta=1.0, kp=0.01, ki=0.1, relative=True)
    # Step 1: KL 20, e = (10 − 20)/10 = −1: P = 0.01·σ(1), I = 0 + 0.1·1 = 0.1.
    # Step 2: KL 5, e = 0.5: P = 0.01·σ(−0.5), I = 0.1 − 0.05 = 0.05.
    expected = [0.01 * sigmoid(1.0) + 0.1, 0.01 * sigmoid(-0.5) + 0.05]
    assert law.simulate([20.0, 5.0], [0.0, 0.0]) == pytest.approx(expected, rel=1e-12)
    # Without the proportional term it is the published law with Ki / target, for any target.
    rng = np.random.default_rng(0)
    kl = rng.uniform(0, 60, 200)
    for target in (3.0, 15.0, 40.0):
        relative = KLController(target, 0.0, 30.0, kp=0.0, ki=0.15, relative=True).simulate(kl, kl)
        published = KLController(target, 0.0, 30.0, kp=0.0, ki=0.15 / target).simulate(kl, kl)
        assert relative == pytest.approx(published, rel=1e-9, abs=1e-12)
    # Off by default, and then absent from the config: laws saved before it keep their shape.
    assert "relative" not in KLController(10.0).get_config()
    assert ScheduleConfig(name="control", target_kl=5, relative_error=True).relative_error
    built = build_schedule(
        ScheduleConfig(name="control", target_kl=5, relative_error=True), steps_per_epoch=1, total_epochs=1
    )
    assert isinstance(built, KLController) and built.relative


def test_geco_law_matches_hand_computed_steps():
    law = DistortionController(target=100.0, min_beta=0.0, max_beta=10.0, rate=0.1, decay=0.9)
    # Step 1: recon 150 misses the target: the law has not engaged, β holds its start, 1.
    # Step 2: recon 50 meets it: engaged, C = −0.5, C_ma = C (its first step), β = exp(0.05).
    b2 = math.exp(0.1 * 0.5)
    # Step 3: recon 120, C = 0.2, C_ma = 0.9·(−0.5) + 0.1·0.2 = −0.43, β = b2·exp(0.043).
    b3 = b2 * math.exp(0.1 * 0.43)
    # Step 4: recon 300, C = 2, C_ma = 0.9·(−0.43) + 0.2 = −0.187: still engaged.
    b4 = b3 * math.exp(0.1 * 0.187)
    assert law.simulate([0.0] * 4, [150.0, 50.0, 120.0, 300.0]) == pytest.approx([1.0, b2, b3, b4], rel=1e-12)


def test_beta_stays_within_its_bounds():
    control = KLController(target=10.0, min_beta=0.2, max_beta=2.0, kp=0.5, ki=0.5)
    assert control.simulate([1e4] * 50, [0.0] * 50).max() == pytest.approx(2.0)
    assert control.simulate([0.0] * 50, [0.0] * 50).min() == pytest.approx(0.2)
    # No wind-up: after a long saturation the integral answers a reversed error at once.
    beta = control.simulate([1e4] * 200 + [0.0] * 5, [0.0] * 205)
    assert beta[-1] < 2.0
    geco = DistortionController(target=100.0, min_beta=0.0, max_beta=3.0, rate=1.0)
    assert geco.simulate([0.0] * 101, [100.0] + [1e4] * 100).min() == pytest.approx(GECO_FLOOR)
    assert geco.simulate([0.0] * 100, [1.0] * 100).max() == pytest.approx(3.0)


def test_controllers_round_trip_and_refuse_bad_arguments():
    laws = (
        KLController(15.0, 0.01, 4.0, 0.02, 0.003),
        KLController(15.0, 0.01, 4.0, 0.02, 0.1, relative=True),
        DistortionController(90.0, 0.1, 5.0, 0.05, 0.9),
    )
    for law in laws:
        assert deserialize(json.loads(json.dumps(serialize(law)))) == law
        with pytest.raises(ValueError, match="depends on training"):
            law.values(10)
    for bad, field in [
        (lambda: KLController(0.0), "target"),
        (lambda: KLController(5.0, min_beta=2.0, max_beta=1.0), "min_beta"),
        (lambda: KLController(5.0, ki=0.0), "ki"),
        (lambda: DistortionController(50.0, decay=1.0), "decay"),
    ]:
        with pytest.raises(ValueError, match=f"`{field}`"):
            bad()


def test_a_per_pixel_distortion_target_is_converted_to_nats_per_image():
    config = ScheduleConfig(name="geco", target_distortion=0.1, distortion_per="pixel", max_beta=5)
    law = build_schedule(config, steps_per_epoch=10, total_epochs=2, pixels=784)
    assert isinstance(law, DistortionController) and law.target == pytest.approx(78.4)


# The controller's step inside the VAE (its own variable, keras.ops), fed a fixed sequence of
# measurements (seed 0); run in this process and, as JSON, in a JAX subprocess.
TRAJECTORY = """
import json, sys
import numpy as np
from keras import ops
from tuner.vae.model import VAE
from tuner.vae.schedules import deserialize

def trajectories(specs, steps=120):
    rng = np.random.default_rng(0)
    kl, recon = rng.uniform(0, 40, steps), rng.uniform(60, 140, steps)
    runs = []
    for spec in specs:
        law = deserialize(spec)
        model = VAE((28, 28, 1), latent_dim=1, filters=[4], schedule=law)
        numbers = {k: model.loss_params[i + 1] for i, k in enumerate(model._schedule_keys)}
        betas = []
        for k, r in zip(kl, recon):
            k, r = ops.convert_to_tensor([[k]], dtype="float32"), ops.convert_to_tensor([r], dtype="float32")
            betas.append(float(ops.convert_to_numpy(model._control(law, k, r, numbers))))
        runs.append(betas)
    return runs, kl, recon

if __name__ == "__main__":
    print(json.dumps(trajectories(json.loads(sys.argv[1]))[0]))
"""


def test_the_in_graph_update_is_the_same_law_on_tensorflow_and_jax():
    pytest.importorskip("jax")
    import keras

    laws = [
        KLController(15.0, 0.0, 1.0, 0.01, 0.001),
        KLController(15.0, 0.0, 1.0, 0.01, 0.05, relative=True),
        DistortionController(100.0, 0.0, 5.0, 0.05, 0.99),
    ]
    specs = [serialize(law) for law in laws]
    namespace: dict = {}
    exec(compile(TRAJECTORY, "trajectory", "exec"), namespace)  # noqa: S102 - the script above
    here, kl, recon = namespace["trajectories"](specs)
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", TRAJECTORY, json.dumps(specs)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    for law, mine, theirs in zip(laws, here, there, strict=True):
        assert np.abs(np.asarray(mine) - np.asarray(theirs)).max() < 1e-4
        assert np.abs(np.asarray(mine) - law.simulate(kl, recon)).max() < 1e-4  # float32 vs float64


def test_training_records_the_controllers_beta_per_epoch(tiny_config, tiny_splits):
    import keras

    from tuner.vae.training import train

    config = tiny_config(schedule={"name": "control", "target_kl": 0.1, "kp": 0.01, "ki": 0.1}, training={"epochs": 2})
    result = train(config, tiny_splits)
    rows = result.history
    state = keras.ops.convert_to_numpy(result.model.beta_state)
    assert rows[-1]["beta_end"] == pytest.approx(float(state[0]))
    assert all(0.0 <= row["beta"] <= 1.0 and 0.0 <= row["beta_end"] <= 1.0 for row in rows)
    assert rows[-1]["beta_end"] > 0.0  # the KL went past 0.1 nats and the controller answered
    assert result.model.evaluate(tiny_splits.val, verbose=0, return_dict=True)["beta"] == 1.0  # val at β = 1


def test_a_study_searches_the_target_and_export_then_train_replays_the_control_law(tmp_path):
    from typer.testing import CliRunner

    from tuner.api import run_study
    from tuner.cli import app
    from tuner.config import load_train_config
    from tuner.report import data
    from tuner.search.records import curves
    from tuner.search.study_file import validate_study
    from tuner.vae.training import train

    url = f"sqlite:///{tmp_path / 'tuner.db'}"
    study_config = validate_study(
        tiny_study_dict(
            "targets",
            schedule={"name": "control", "kp": 0.01, "ki": 0.01},
            search={"target_kl": {"low": 2, "high": 6}, "latent_dim": 4, "learning_rate": 0.003},
            budget={"n_trials": 1},
            pruner={"name": "none"},
            enqueue_baseline=False,
        )
    )
    trial = run_study(study_config, storage_url=url).study.best_trial
    assert set(trial.params) == {"target_kl"}  # neither max_beta nor anneal_epochs: not β-space
    rows = curves(trial)
    out = tmp_path / "best.yaml"
    assert CliRunner().invoke(app, ["export", "--storage", url, "-o", str(out)]).exit_code == 0
    config = load_train_config(out)
    assert config.schedule.name == "control" and config.schedule.target_kl == pytest.approx(trial.params["target_kl"])
    again = train(config).history
    assert [r["beta_end"] for r in again] == pytest.approx([r["beta_end"] for r in rows], abs=1e-4)
    assert again[-1]["val_elbo"] == pytest.approx(rows[-1]["val_elbo"], abs=1e-2)
    # The report draws the β the controller set, epoch by epoch, from the β it started at.
    curve = data.beta_curve(trial)
    assert curve is not None
    assert list(curve.steps) == [0, *(r["epoch"] * trial.user_attrs["steps_per_epoch"] for r in rows)]
    assert list(curve.beta) == pytest.approx([0.0, *(r["beta_end"] for r in rows)])
    # The summary names the target, not a max β that was never chosen.
    text = data._schedule_text(trial)
    assert text.startswith(f"control: KL held at {trial.params['target_kl']:.4g} nats per image, β in [0, 1]")
    assert text.endswith(f"ended at β = {rows[-1]['beta_end']:.3g}")


def controlled(number: int, ends: list[tuple[float, float, float]], target: float = 10.0) -> optuna.trial.FrozenTrial:
    """A finished ControlVAE trial whose epochs ended with (val ELBO, KL, β)."""
    from tuner.search.records import CONFIG_ATTR, PRUNABLE_ATTR, SCHEDULE_ATTR, curve_key

    attrs = {
        SCHEDULE_ATTR: serialize(KLController(target, 0.0, 1.0)),
        PRUNABLE_ATTR: [],
        CONFIG_ATTR: {"training": {"epochs": len(ends)}, "schedule": {"name": "control", "max_beta": 1.0}},
    }
    for epoch, (_, kl, beta) in enumerate(ends, start=1):
        attrs[curve_key(epoch)] = {"epoch": epoch, "kl": kl, "recon": 80.0, "beta_end": beta, "val_elbo": 0.0}
    return optuna.trial.create_trial(
        value=ends[-1][0],
        intermediate_values={epoch: v for epoch, (v, _, _) in enumerate(ends, start=1)},
        user_attrs=attrs,
        state=optuna.trial.TrialState.COMPLETE,
    )


def test_a_controller_short_of_its_target_is_treated_as_warming_up():
    from tuner.search.pruning import ScheduleAwareHalving, target_reached

    study = optuna.create_study(direction="maximize")
    for number in range(6):  # good trials at their target from epoch 1
        study.add_trial(controlled(number, [(-90.0, 10.0, 0.5)]))
    # A bad value at epoch 1: still climbing to its KL target, so not pruned ...
    short = controlled(6, [(-200.0, 3.0, 0.001)])
    assert target_reached(short, 1) is False
    assert not ScheduleAwareHalving(1, 3).prune(study, short)
    # ... but the same value with the target reached (or β held at a bound) is.
    at_target = controlled(7, [(-200.0, 10.5, 0.4)])
    stuck = controlled(8, [(-200.0, 3.0, 1.0)])
    assert target_reached(at_target, 1) and target_reached(stuck, 1)
    assert ScheduleAwareHalving(1, 3).prune(study, at_target)
    assert ScheduleAwareHalving(1, 3).prune(study, stuck)


@pytest.mark.parametrize(
    ("sections", "names"),
    [
        ({"schedule": {"name": "control"}}, "schedule: name control needs target_kl"),
        ({"schedule": {"name": "geco", "target_distortion": -3}}, "schedule.target_distortion"),
        ({"schedule": {"name": "control", "target_kl": 5, "min_beta": 2, "max_beta": 1}}, "min_beta (2.0)"),
        ({"schedule": {"name": "geco", "target_distortion": 80, "geco_decay": 1.5}}, "schedule.geco_decay"),
        ({"schedule": {"name": "control", "target_kl": 5, "distortion_per": "row"}}, "schedule.distortion_per"),
    ],
)
def test_bad_controller_settings_are_refused_in_one_line(tmp_path, monkeypatch, capsys, sections, names):
    from tuner.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(**sections)))
    with pytest.raises(SystemExit) as exited:
        main(["train", str(path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exited.value.code == 2 and len(errors) == 1 and names in errors[0], errors
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["cfg.yaml"]


def test_a_study_file_needs_a_target_for_each_controller_it_can_sample():
    from tuner.errors import ConfigError
    from tuner.search.study_file import validate_study

    both = {"schedule": {"choices": ["control", "geco"]}, "target_kl": {"low": 5, "high": 30}}
    with pytest.raises(ConfigError, match=r"schedule\.target_distortion: name geco needs target_distortion"):
        validate_study(tiny_study_dict(search=both))
    validate_study(tiny_study_dict(search={**both, "target_distortion": {"low": 80, "high": 120}}))
    assert TrainConfig.model_validate(tiny_config_dict(schedule={"name": "geco", "target_distortion": 90}))


def test_the_targets_study_samples_a_target_for_each_family_and_no_beta():
    from tuner.search.space import sample_config
    from tuner.search.study_file import load_study_config

    study_config = load_study_config(REPO / "studies" / "targets.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    families = set()
    for _ in range(12):
        trial = study.ask()
        config = sample_config(trial, study_config)
        families.add(config.schedule.name)
        target = "target_kl" if config.schedule.name == "control" else "target_distortion"
        assert set(trial.params) & {"max_beta", "anneal_epochs", "target_kl", "target_distortion"} == {target}
        assert config.schedule.max_beta == 30.0  # the file's bound, not a sampled β
        study.tell(trial, 0.0)
    assert families == {"control", "geco"}
