"""Sampling and pruning logic with fake trials (ask/report), no training."""

import optuna
import pytest

from tuner.search.pruning import (
    ScheduleAwareHalving,
    ScheduleAwareHyperband,
    ScheduleAwarePruner,
    build_pruner,
    prunable_epochs,
)
from tuner.search.records import PRUNABLE_ATTR
from tuner.search.space import baseline_params, sample_config
from tuner.search.study_file import PrunerConfig, validate_study
from tuner.vae.schedules import LinearWarmup


def study_cfg(**extra):
    return validate_study({"name": "s", "training": {"epochs": 6}, **extra})


def test_sampled_values_stay_in_range_and_reach_config():
    cfg = study_cfg(
        search={
            "schedule": {"choices": ["linear", "cyclical", "sigmoid", "constant"]},
            "n_cycles": {"low": 1, "high": 4},
            "batch_size": {"choices": [32, 64]},
            "optimizer": {"choices": ["adam", "rmsprop"]},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        config = sample_config(trial, cfg)
        p = trial.params
        assert 0.05 <= p["max_beta"] <= 10 and config.schedule.max_beta == p["max_beta"]
        assert 2 <= p["latent_dim"] <= 128 and config.model.latent_dim == p["latent_dim"]
        assert 1e-4 <= p["learning_rate"] <= 3e-3 and config.training.learning_rate == p["learning_rate"]
        assert config.schedule.name == p["schedule"] and config.training.batch_size == p["batch_size"]
        # Family-specific parameters exist only for their family.
        assert ("n_cycles" in p) == (p["schedule"] == "cyclical")
        assert ("anneal_epochs" in p) == (p["schedule"] != "constant")
        if "anneal_epochs" in p:
            assert 0 <= p["anneal_epochs"] <= 6 and config.schedule.anneal_epochs == p["anneal_epochs"]
        study.tell(trial, 0.0)


def test_baseline_is_the_common_default():
    assert baseline_params(study_cfg()) == {
        "max_beta": 1.0,
        "anneal_epochs": 0,
        "latent_dim": 16,
        "learning_rate": 1e-3,
    }
    narrow = study_cfg(search={"latent_dim": {"low": 2, "high": 8}})
    assert "latent_dim" not in baseline_params(narrow)


def run_reports(study, values, prunable):
    """A trial reporting ``values`` at epochs 1..n; returns the epochs at which it was told to prune."""
    trial = study.ask()
    trial.set_user_attr(PRUNABLE_ATTR, prunable)
    told = []
    for epoch, value in enumerate(values, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            told.append(epoch)
    return trial, told


def make_study(pruner):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for offset in (0.0, 1.0, 2.0):  # three finished constant-β trials: val ELBO -100 .. -95
        trial, _ = run_reports(study, [-110 + offset, -100 + offset, -97 + offset, -95 + offset], [1, 2, 3, 4])
        study.tell(trial, -95 + offset)
    return study


def test_schedule_aware_pruner_waits_for_the_warmup():
    warmup = [-140.0, -120.0, -99.0, -96.0]  # worse than the median while β is still rising
    aware = make_study(ScheduleAwarePruner(optuna.pruners.MedianPruner(n_startup_trials=3)))
    blind = make_study(optuna.pruners.MedianPruner(n_startup_trials=3))
    prunable = prunable_epochs(LinearWarmup(1.0, 2 * 10), 10, 4, 1)  # warm-up over 2 epochs
    assert prunable == [3, 4]
    _, told_blind = run_reports(blind, warmup, prunable)
    _, told_aware = run_reports(aware, warmup, prunable)
    assert told_blind[0] == 1  # a blind median pruner kills the warm-up at once
    assert 1 not in told_aware and 2 not in told_aware
    # After the warm-up the wrapped pruner decides as usual: a bad trial is still pruned.
    _, told = run_reports(aware, [-140.0, -130.0, -125.0, -120.0], prunable)
    assert told == [3, 4]


def test_build_pruner_variants():
    assert isinstance(build_pruner(PrunerConfig(name="none")), optuna.pruners.NopPruner)
    hb = build_pruner(PrunerConfig(name="hyperband"))
    assert isinstance(hb, ScheduleAwareHyperband) and hb.reduction_factor == 3
    assert isinstance(
        build_pruner(PrunerConfig(name="hyperband", schedule_aware=False)), optuna.pruners.HyperbandPruner
    )
    sh = build_pruner(PrunerConfig(name="successive_halving", schedule_aware=False))
    assert isinstance(sh, optuna.pruners.SuccessiveHalvingPruner)
    aware = build_pruner(PrunerConfig(name="successive_halving", min_resource=2, reduction_factor=4))
    assert isinstance(aware, ScheduleAwareHalving) and aware.reduction_factor == 4
    study = optuna.create_study()
    number = study.ask().number
    trial = study.trials[number]  # the pruner sees a FrozenTrial
    assert aware.first_rung(study, trial, 40) == 2
    assert [e for e in range(1, 40) if aware.is_rung(e, 2)] == [2, 8, 32]
    auto = build_pruner(PrunerConfig(name="successive_halving", min_resource="auto"))
    assert isinstance(auto, ScheduleAwareHalving)
    assert auto.first_rung(study, trial, 600) == 6 and auto.first_rung(study, trial, 50) == 1  # epochs // 100


def test_hyperband_deals_trials_to_brackets_and_ranks_within_each():
    """Optuna's budgets: 27 epochs, factor 3 -> 4 brackets (first rungs 1, 3, 9, 27) taking
    ceil(4·27/4), ceil(4·9/3), ceil(4·3/2), ceil(4·1/1) of every 49 trials."""
    pruner = ScheduleAwareHyperband(1, 3)
    assert pruner.brackets(1, 27) == [27, 12, 6, 4] and pruner.brackets(1, 8) == [3, 2]
    assert pruner.brackets(1, 1) == [1]  # a one-epoch trial: one bracket, one rung
    dealt = [pruner.bracket("study", n, 1, 27) for n in range(4900)]
    shares = [dealt.count(b) / len(dealt) for b in range(4)]
    assert shares == pytest.approx([27 / 49, 12 / 49, 6 / 49, 4 / 49], abs=0.03)
    assert dealt == [pruner.bracket("study", n, 1, 27) for n in range(4900)]  # a trial keeps its bracket

    # Eight-epoch trials: bracket 0 has rungs at epochs 1 and 3, bracket 1 at epoch 3 only.
    study = optuna.create_study(study_name="hb", direction="maximize", pruner=ScheduleAwareHyperband(1, 3))
    brackets = [pruner.bracket("hb", n, 1, 8) for n in range(40)]
    pruned = [halving_trial(study, [-100.0 - n + e for e in range(8)]) for n in range(40)]
    assert set(brackets) == {0, 1}
    for n, (bracket, at) in enumerate(zip(brackets, pruned, strict=True)):
        earlier = [m for m in range(n) if brackets[m] == bracket]
        # Each trial is worse than every earlier one, so it stops at its bracket's first rung
        # unless it is the first of its bracket: the trials of the other bracket do not count.
        expected = (1 if bracket == 0 else 3) if earlier else None
        assert at == expected, (n, bracket, earlier)


def test_percentile_pruner_keeps_the_best_share_also_among_warm_up_peers():
    from tuner.search.records import CONFIG_ATTR, curve_key

    pruner = build_pruner(PrunerConfig(name="percentile", percentile=25, n_startup_trials=2))
    assert isinstance(pruner, ScheduleAwarePruner) and isinstance(pruner.pruner, optuna.pruners.PercentilePruner)
    assert pruner.percentile == 25
    study = optuna.create_study(direction="maximize", pruner=pruner)

    def warm_up(values):  # β at half its maximum after epoch 1, full after epoch 2
        trial = study.ask()
        trial.set_user_attr(PRUNABLE_ATTR, [3, 4])
        trial.set_user_attr(CONFIG_ATTR, {"schedule": {"max_beta": 1.0}})
        told = []
        for epoch, value in enumerate(values, start=1):
            trial.set_user_attr(curve_key(epoch), {"beta_end": min(1.0, epoch / 2)})
            trial.report(value, epoch)
            if trial.should_prune():
                told.append(epoch)
        return trial, told

    for value in (-100.0, -101.0, -102.0, -103.0):  # four finished warm-ups, peers of each other
        trial, _ = warm_up([value] * 4)
        study.tell(trial, value)
    # Better than the median of its peers, but not in their best quarter: a median pruner
    # would keep it, the 25th percentile stops it during the warm-up.
    assert warm_up([-101.2] * 4)[1][0] == 1
    assert warm_up([-100.2] * 4)[1] == []  # in the best quarter: kept


def test_samplers_are_built_and_seeded_per_worker():
    import importlib.util

    from tuner.errors import ConfigError
    from tuner.search.samplers import build_sampler

    assert isinstance(build_sampler(study_cfg()), optuna.samplers.TPESampler)
    random_a = build_sampler(study_cfg(sampler={"name": "random", "seed": 3}))
    random_b = build_sampler(study_cfg(sampler={"name": "random", "seed": 3}), seed_offset=1)
    draws = [optuna.create_study(sampler=s).ask().suggest_float("x", 0, 1) for s in (random_a, random_b)]
    assert draws[0] != draws[1]  # parallel workers do not propose the same parameters
    assert isinstance(build_sampler(study_cfg(sampler={"name": "cmaes"})), optuna.samplers.CmaEsSampler)
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(ConfigError, match="sampler.name: gp needs PyTorch"):
            study_cfg(sampler={"name": "gp"})


def test_warming_up_trials_are_compared_with_trials_in_the_same_phase():
    from tuner.search.records import CONFIG_ATTR, curve_key

    def trial_with(study, values, progress, prunable):
        trial = study.ask()
        trial.set_user_attr(PRUNABLE_ATTR, prunable)
        trial.set_user_attr(CONFIG_ATTR, {"schedule": {"max_beta": 2.0}})
        told = []
        for epoch, (value, p) in enumerate(zip(values, progress, strict=False), start=1):
            trial.set_user_attr(curve_key(epoch), {"beta_end": 2.0 * p})
            trial.report(value, epoch)
            if trial.should_prune():
                told.append(epoch)
        return trial, told

    study = optuna.create_study(
        direction="maximize", pruner=ScheduleAwarePruner(optuna.pruners.MedianPruner(n_startup_trials=3))
    )
    # Three finished constant-β trials (never warming up) and three long warm-ups.
    for offset in (0, 1, 2):
        trial, _ = trial_with(study, [-100 + offset] * 4, [1, 1, 1, 1], [1, 2, 3, 4])
        study.tell(trial, -100 + offset)
    for offset in (0, 1, 2):
        trial, _ = trial_with(study, [-140 + offset, -125 + offset, -110, -99], [1 / 3, 2 / 3, 1, 1], [4])
        study.tell(trial, -99)
    # A warm-up as good as its peers survives, although it trails the constant-β trials...
    _, told = trial_with(study, [-138, -123, -109, -98], [1 / 3, 2 / 3, 1, 1], [4])
    assert told == []
    # ...while a warm-up worse than its own peers is pruned during the warm-up.
    _, told = trial_with(study, [-160, -150, -140, -130], [1 / 3, 2 / 3, 1, 1], [4])
    assert told[0] == 1


def test_a_warm_up_without_peers_is_judged_by_its_elbo_without_kl():
    """With ``warmup_bound`` and no phase peers, a warm-up is pruned only when −val_recon (its
    ELBO had the KL been zero) is below the median of what every finished trial reported at
    that epoch."""
    from tuner.search.records import CONFIG_ATTR, curve_key

    pruner = build_pruner(PrunerConfig(name="median", warmup_bound=True))
    assert isinstance(pruner, ScheduleAwarePruner) and pruner.warmup_bound
    median = build_pruner(PrunerConfig(name="median"))
    assert isinstance(median, ScheduleAwarePruner) and not median.warmup_bound  # opt-in
    study = make_study(pruner)  # epoch 1: -110..-108

    def warm_up(values, recons):
        trial = study.ask()
        trial.set_user_attr(PRUNABLE_ATTR, [4])
        trial.set_user_attr(CONFIG_ATTR, {"schedule": {"max_beta": 1.0}})
        told = []
        for epoch, (value, recon) in enumerate(zip(values, recons, strict=True), start=1):
            trial.set_user_attr(curve_key(epoch), {"beta_end": epoch / 4, "val_recon": recon})
            trial.report(value, epoch)
            if trial.should_prune():
                told.append(epoch)
        return told

    # Far behind in ELBO while β rises, but its reconstructions alone beat the others' ELBO.
    assert warm_up([-150, -130, -110, -93], [95, 92, 90, 88]) == []
    # Reconstructions worse than the median's whole ELBO: no KL could save it.
    assert warm_up([-150, -140, -130, -120], [115, 112, 110, 108]) == [1, 2, 3, 4]


def test_budget_gate_counts_running_trials_started_earlier():
    from tuner.search.objective import budget_reached

    study = optuna.create_study()
    first = study.ask()  # running, started first
    study.tell(study.ask(), 1.0)
    later = study.ask()
    assert budget_reached(later, 2) and not budget_reached(first, 2)
    # Without heartbeats a RUNNING trial may belong to a dead worker: only finished ones count.
    assert not budget_reached(later, 2, count_running=False)


def halving_trial(study, values, progress=None, prunable=None, tell=True):
    """A trial of len(values) epochs (β/max_beta after each epoch: ``progress``, default 1);
    returns the epoch it was pruned at, or None. Finished trials are told to the study."""
    from tuner.search.records import CONFIG_ATTR, curve_key

    epochs = len(values)
    progress = progress or [1.0] * epochs
    trial = study.ask()
    trial.set_user_attr(PRUNABLE_ATTR, prunable or list(range(1, epochs + 1)))
    trial.set_user_attr(CONFIG_ATTR, {"schedule": {"max_beta": 2.0}, "training": {"epochs": epochs}})
    for epoch, (value, p) in enumerate(zip(values, progress, strict=True), start=1):
        trial.set_user_attr(curve_key(epoch), {"beta_end": 2.0 * p})
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    if tell:
        study.tell(trial, values[-1])
    return None


def test_successive_halving_keeps_the_best_share_of_each_rung_epoch():
    # Rungs at epochs 1, 2 and 4 (min_resource 1, reduction factor 2): the better half goes on.
    # With fewer than two values at a rung, Optuna's rule: only the best goes on (hence the
    # first trials arrive best-last).
    study = optuna.create_study(direction="maximize", pruner=ScheduleAwareHalving(1, 2))
    for v in (-103.0, -102.0, -101.0, -100.0):
        assert halving_trial(study, [v, v + 10, v + 15, v + 17, v + 18]) is None
    assert halving_trial(study, [-100.5, -90.5, -85.5, -83.5, -82.5]) is None  # second at every rung
    assert halving_trial(study, [-102.5, -80.0, -80.0, -80.0, -80.0]) == 1  # fifth of six at epoch 1
    # Judged at rungs only: terrible at epoch 3 (no rung), stopped at epoch 4.
    assert halving_trial(study, [-99.0, -89.0, -150.0, -150.0, -150.0]) == 4


def test_successive_halving_judges_a_warm_up_by_its_phase_peers_only():
    study = optuna.create_study(direction="maximize", pruner=ScheduleAwareHalving(1, 2))
    for v in (-102.0, -101.0, -100.0):
        halving_trial(study, [v, v + 10, v + 15, v + 17])
    warming = [0.25, 0.5, 0.75, 1.0]
    # Far behind the constant-β trials at rungs 1 and 2, but still warming up and without
    # three phase peers: they pass those rungs, and at epoch 4 compete with everyone.
    for v in (-152.0, -151.0, -150.0):
        assert halving_trial(study, [v, v + 30, v + 60, -82.0 + (v + 152) / 2], warming, prunable=[4]) is None
    # Now a warm-up has three peers in the same phase: outside their better half, it stops...
    assert halving_trial(study, [-160.0, -120.0, -90.0, -84.0], warming, prunable=[4]) == 1
    # ...inside it, it goes on, although every constant-β trial was far ahead at epochs 1 and 2.
    assert halving_trial(study, [-149.0, -119.0, -89.0, -80.0], warming, prunable=[4]) is None


def test_successive_halving_reads_rung_values_at_the_rung_epoch():
    """A trial that passed rung 1 in its warm-up does not enter rung 1 later with a better value.
    Optuna's SuccessiveHalvingPruner, wrapped, records a value at the epoch it is first asked,
    and then prunes the next trial that is the best at epoch 1."""
    wrapped = ScheduleAwarePruner(optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    for pruner, pruned_at in ((ScheduleAwareHalving(1, 2), None), (wrapped, 1)):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        halving_trial(study, [-100.0, -90.0, -85.0])
        halving_trial(study, [-130.0, -95.0, -70.0], [0.5, 1.0, 1.0], prunable=[3])  # epoch 2: grace
        assert halving_trial(study, [-99.0, -89.0, -84.0]) == pruned_at  # the best at epochs 1 and 2


def test_successive_halving_counts_running_trials_and_follows_the_direction():
    # Another worker's trial, still running, reported 100 at epoch 1; in a minimized study a
    # trial reporting 120 there is outside the better half of the two, and stops.
    study = optuna.create_study(direction="minimize", pruner=ScheduleAwareHalving(1, 2))
    assert halving_trial(study, [100.0, 95.0], tell=False) is None
    assert halving_trial(study, [120.0, 80.0]) == 1
    assert halving_trial(study, [90.0, 80.0]) is None
