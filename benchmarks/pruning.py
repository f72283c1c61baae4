"""Pruning over seeds: the same study (same sampler seed, same number of trials) without
pruning and with each pruner, repeated for several seeds.

    python benchmarks/pruning.py --seeds 5      # ~50 minutes on 2 CPU cores
    python benchmarks/pruning.py --seeds 1 --variants schedule_aware_p25 --out /tmp/p25.json   # one candidate (and the unpruned baseline)

For each variant and seed: epochs trained with pruning / without (goal ≤ 0.5), the gap
between the best val ELBOs (no pruning − pruned, in nats; goal ≤ 0.5), how many trials were
stopped while their β was still warming up, and where the epochs went (see ``where_epochs_go``).
The summary under ``variants`` gives the mean and standard deviation over the seeds.
Results are written after every run, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from typing import Any

from common import REPO, write

from tuner.search.records import PRUNABLE_ATTR, PRUNED_AT_ATTR, curves
from tuner.search.study import run_study
from tuner.search.study_file import validate_study

STUDY: dict[str, Any] = {
    # Small on purpose (2 CPU cores, 5 seeds × 5 variants × 16 trials): what is measured is
    # which epochs each pruner spends, not how good a VAE gets.
    "data": {"dataset": "mnist", "n_train": 1000, "n_val": 500, "dynamic_binarization": True},
    "model": {"filters": [16, 32]},
    "schedule": {"name": "linear"},
    "training": {"epochs": 8, "batch_size": 128},
    "search": {
        "max_beta": {"low": 0.1, "high": 4.0, "log": True},
        "anneal_epochs": {"low": 0, "high": 6},
        "latent_dim": {"low": 4, "high": 32, "log": True},
        "learning_rate": {"low": 3e-4, "high": 3e-3, "log": True},
    },
    "sampler": {"name": "tpe", "n_startup_trials": 6},
}
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "blind_median": {"name": "median", "schedule_aware": False, "n_startup_trials": 3},
    # The default.
    "schedule_aware_median": {"name": "median", "schedule_aware": True, "grace_epochs": 1, "n_startup_trials": 3},
    # The same, and a warm-up without phase peers is stopped when even a zero KL would leave
    # it below the median (its −val_recon against every trial's val ELBO at that epoch).
    "schedule_aware_median_bound": {"name": "median", "n_startup_trials": 3, "warmup_bound": True},
    # Candidates for the new default, warm-ups still judged against phase peers only: keep the
    # best quarter at every epoch from the third trial on, or Optuna's successive halving
    # (rungs at 1, 3, 9 epochs on the β plateau, the best third promoted).
    "schedule_aware_p25": {"name": "percentile", "percentile": 25, "grace_epochs": 1, "n_startup_trials": 2},
    "schedule_aware_sha": {"name": "successive_halving", "grace_epochs": 1, "min_resource": 1, "reduction_factor": 3},
}


def where_epochs_go(study: Any, n_startup: int, top: int = 3) -> dict[str, int]:
    """Epochs by what they bought: trials before the pruner could act (startup), epochs a trial
    could not be pruned at because its β was still warming up (warm-up), epochs of trials that
    were pruned later, of trials that finished among the ``top`` best, and of those that
    finished further down (mid-pack: trained to the end, then not needed)."""
    trials = sorted((t for t in study.trials if curves(t)), key=lambda t: t.number)
    complete = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: -(t.value or -1e30))
    best = {t.number for t in complete[:top]}
    share = {"startup": 0, "warm_up": 0, "pruned_trials": 0, "top_trials": 0, "mid_pack": 0}
    for index, trial in enumerate(trials):
        n = len(curves(trial))
        if index < n_startup:
            share["startup"] += n
            continue
        prunable = set(trial.user_attrs.get(PRUNABLE_ATTR) or [])
        warm = sum(1 for epoch in range(1, n + 1) if epoch not in prunable)
        share["warm_up"] += warm
        kind = "pruned_trials" if trial.state.name == "PRUNED" else "top_trials" if trial.number in best else "mid_pack"
        share[kind] += n - warm
    return share


def summarize(study: Any, n_startup: int) -> dict[str, Any]:
    trials = [t for t in study.trials if curves(t)]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    in_warmup = [t for t in pruned if t.user_attrs.get(PRUNED_AT_ATTR) not in (t.user_attrs.get(PRUNABLE_ATTR) or [])]
    return {
        "epochs_trained": sum(len(curves(t)) for t in trials),
        "best_val_elbo": study.best_value,
        "n_pruned": len(pruned),
        "pruned_during_warmup": len(in_warmup),
        "where_epochs_go": where_epochs_go(study, n_startup),
    }


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pruning_seeds.json"))
    args = parser.parse_args()
    names = ["none", *[v for v in args.variants if v != "none"]]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name in names:
                pruner = VARIANTS[name]
                content = {
                    "name": f"{name}-{seed}",
                    **STUDY,
                    "training": {**STUDY["training"], "seed": seed},
                    "sampler": {**STUDY["sampler"], "seed": seed},
                    "pruner": pruner,
                    "budget": {"n_trials": args.n_trials},
                }
                study = run_study(validate_study(content), f"sqlite:///{tmp}/{name}-{seed}.db").study
                row = {"seed": seed, **summarize(study, pruner.get("n_startup_trials", 0))}
                base = runs["none"][-1] if name != "none" else row
                row["epoch_ratio"] = row["epochs_trained"] / base["epochs_trained"]
                row["best_gap_nats"] = base["best_val_elbo"] - row["best_val_elbo"]
                runs[name].append(row)
                print(
                    f"seed {seed} {name}: epochs {row['epoch_ratio']:.2f}, gap {row['best_gap_nats']:+.2f}", flush=True
                )
                write(
                    {
                        "n_seeds": min(len(runs[n]) for n in names),  # seeds done for every variant
                        "n_trials": args.n_trials,
                        "study": STUDY,
                        "variants": {
                            n: {
                                "pruner": VARIANTS[n],
                                "epoch_ratio": mean_std([r["epoch_ratio"] for r in rs]),
                                "best_gap_nats": mean_std([r["best_gap_nats"] for r in rs]),
                                "runs": rs,
                            }
                            for n, rs in runs.items()
                            if rs
                        },
                    },
                    args.out,
                )


if __name__ == "__main__":
    main()
