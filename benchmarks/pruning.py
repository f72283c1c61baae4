"""Pruning: the same study (same sampler seed, same number of trials) without pruning, with
the schedule-aware median pruner, and with a schedule-blind median pruner.

    python benchmarks/pruning.py

Prints epochs trained with pruning / without (goal ≤ 0.5), the gap between the best val
ELBOs (goal ≤ 0.5 nat), and how many trials each pruner stopped while their β was still
warming up (the trials a β study exists to evaluate).
"""

from __future__ import annotations

import argparse
import tempfile

from common import write

from tuner.search.records import PRUNABLE_ATTR, curves
from tuner.search.study import run_study
from tuner.search.study_file import validate_study

STUDY = {
    "data": {"dataset": "mnist", "n_train": 2000, "n_val": 500},
    "model": {"filters": [16, 32]},
    "schedule": {"name": "linear"},
    "training": {"epochs": 8, "batch_size": 128, "seed": 0},
    "search": {
        "max_beta": {"low": 0.1, "high": 4.0, "log": True},
        "anneal_epochs": {"low": 0, "high": 6},
        "latent_dim": {"low": 4, "high": 32, "log": True},
        "learning_rate": {"low": 3e-4, "high": 3e-3, "log": True},
    },
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 6},
}
VARIANTS = {
    "none": {"name": "none"},
    "schedule_aware_median": {"name": "median", "schedule_aware": True, "grace_epochs": 1, "n_startup_trials": 4},
    "blind_median": {"name": "median", "schedule_aware": False, "n_startup_trials": 4},
}


def summarize(study) -> dict:
    trials = [t for t in study.trials if curves(t)]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    in_warmup = [
        t for t in pruned if t.user_attrs.get("pruned_at_epoch") not in (t.user_attrs.get(PRUNABLE_ATTR) or [])
    ]
    return {
        "epochs_trained": sum(len(curves(t)) for t in trials),
        "best_val_elbo": study.best_value,
        "n_pruned": len(pruned),
        "pruned_during_warmup": len(in_warmup),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pruner in VARIANTS.items():
            cfg = validate_study({"name": name, **STUDY, "pruner": pruner, "budget": {"n_trials": args.n_trials}})
            results[name] = summarize(run_study(cfg, f"sqlite:///{tmp}/{name}.db").study)
    base = results["none"]
    for name in ("schedule_aware_median", "blind_median"):
        results[f"{name}_epoch_ratio"] = results[name]["epochs_trained"] / base["epochs_trained"]
        results[f"{name}_best_gap_nats"] = base["best_val_elbo"] - results[name]["best_val_elbo"]
    write(results, args.out)


if __name__ == "__main__":
    main()
