"""Pruning over seeds: the same study (same sampler seed, same number of trials) without
pruning and with each pruner, repeated for several seeds.

    python benchmarks/pruning.py --seeds 5      # ~50 minutes on 2 CPU cores
    python benchmarks/pruning.py --seeds 1 --variants schedule_aware_p25 --out /tmp/p25.json   # one candidate (and the unpruned baseline)
    python benchmarks/pruning.py --epoch-budget 0.5 --out benchmarks/results/pruning_budget.json

Two ways to compare. By default every study runs the same number of trials, so the ratio is
what the pruner saved. But in a live study a pruned trial changes what TPE proposes next: the
pruned study soon searches elsewhere, and its best is as much the luck of another path as the
pruner's judgment (``unpruned_winner`` says, per run, whether the unpruned study's best config
was pruned, kept, or never proposed; ``pruning_replay.py`` measures the judgment alone). With
``--epoch-budget F`` each pruned study instead runs trials until the next one could take it
past F × the unpruned study's epochs: what a user with a fixed budget gets, the question
"as good a winner for half the epochs?".

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
from collections import Counter
from pathlib import Path
from typing import Any

from common import REPO, write

from tuner.api import run_study
from tuner.search.records import PRUNABLE_ATTR, PRUNED_AT_ATTR, curves
from tuner.search.study_file import validate_study

STUDY: dict[str, Any] = {
    # Small on purpose (2 CPU cores, 5 seeds × several variants × 24 trials): what is measured is
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
    # The default in earlier versions.
    "schedule_aware_median": {"name": "median", "schedule_aware": True, "grace_epochs": 1, "n_startup_trials": 3},
    # The same, and a warm-up without phase peers is stopped when even a zero KL would leave
    # it below the median (its −val_recon against every trial's val ELBO at that epoch).
    "schedule_aware_median_bound": {"name": "median", "n_startup_trials": 3, "warmup_bound": True},
    # Keep the best quarter at every epoch from the third trial on; warm-ups still judged
    # against phase peers only.
    "schedule_aware_p25": {"name": "percentile", "percentile": 25, "grace_epochs": 1, "n_startup_trials": 2},
    # Successive halving (ScheduleAwareHalving): rungs at epochs 1 and 3 (rf 3) or 1 and 4
    # (rf 4, the default), the best third (quarter) of every trial's value at
    # that epoch continues; a trial still warming up at a rung is compared with its phase peers only.
    "schedule_aware_sha": {"name": "successive_halving", "grace_epochs": 1, "min_resource": 1, "reduction_factor": 3},
    "schedule_aware_sha_rf4": {
        "name": "successive_halving",
        "grace_epochs": 1,
        "min_resource": 1,
        "reduction_factor": 4,
    },
    # Hyperband as brackets of that halving (ScheduleAwareHyperband): with 8 epochs
    # and factor 3, 3 of every 5 trials have rungs at epochs 1 and 3, the others at epoch 3.
    "schedule_aware_hyperband": {"name": "hyperband", "grace_epochs": 1, "min_resource": 1, "reduction_factor": 3},
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


def winner_fate(study: Any, winner: dict[str, Any]) -> str:
    """What the pruned study did with the unpruned study's best config: "pruned" (a pruning
    mistake), "kept" (trained to the end), or "not_sampled" (the searches parted before it, so
    the gap is the sampler's path, not the pruner's judgment)."""
    for trial in study.trials:
        if trial.params == winner:
            return "pruned" if trial.state.name == "PRUNED" else "kept"
    return "not_sampled"


def summarize(study: Any, n_startup: int, winner: dict[str, Any] | None) -> dict[str, Any]:
    trials = [t for t in study.trials if curves(t)]
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    in_warmup = [t for t in pruned if t.user_attrs.get(PRUNED_AT_ATTR) not in (t.user_attrs.get(PRUNABLE_ATTR) or [])]
    return {
        "epochs_trained": sum(len(curves(t)) for t in trials),
        "best_val_elbo": study.best_value,
        "best_params": study.best_params,
        "n_trials": len(trials),
        "n_pruned": len(pruned),
        "pruned_during_warmup": len(in_warmup),
        "unpruned_winner": winner_fate(study, winner) if winner is not None else "kept",
        "where_epochs_go": where_epochs_go(study, n_startup),
    }


def stop_before(cap: float, trial_epochs: int) -> Any:
    """A trial callback that stops the study when one more full trial could pass ``cap`` epochs."""

    def callback(study: Any, trial: Any) -> None:
        if sum(len(curves(t)) for t in study.trials) + trial_epochs > cap:
            study.stop()

    return callback


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pruning_seeds.json"))
    parser.add_argument(
        "--epoch-budget",
        type=float,
        metavar="F",
        help="pruned studies run as many trials as fit in F x the unpruned study's epochs",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the studies' SQLite files here (for pruning_replay.py)")
    args = parser.parse_args()
    names = ["none", *[v for v in args.variants if v != "none"]]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
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
                base = runs["none"][-1] if name != "none" else None
                callbacks = []
                if args.epoch_budget and base is not None:
                    content["budget"] = {"n_trials": 10 * args.n_trials}  # the epoch budget ends it
                    cap = args.epoch_budget * base["epochs_trained"]
                    callbacks.append(stop_before(cap, STUDY["training"]["epochs"]))
                study_config = validate_study(content)
                for suffix in ("", "-wal", "-shm"):  # --keep: no trials of an earlier run
                    Path(f"{tmp}/{name}-{seed}.db{suffix}").unlink(missing_ok=True)
                study = run_study(
                    study_config, storage_url=f"sqlite:///{tmp}/{name}-{seed}.db", callbacks=callbacks
                ).study
                row = {
                    "seed": seed,
                    **summarize(study, pruner.get("n_startup_trials", 0), base and base["best_params"]),
                }
                base = base or row
                row["epoch_ratio"] = row["epochs_trained"] / base["epochs_trained"]
                row["best_gap_nats"] = base["best_val_elbo"] - row["best_val_elbo"]
                runs[name].append(row)
                print(
                    f"seed {seed} {name}: epochs {row['epoch_ratio']:.2f}, gap {row['best_gap_nats']:+.2f},"
                    f" unpruned winner {row['unpruned_winner']}",
                    flush=True,
                )
                write(
                    {
                        "n_seeds": min(len(runs[n]) for n in names),  # seeds done for every variant
                        "n_trials": args.n_trials,
                        "epoch_budget": args.epoch_budget,
                        "study": STUDY,
                        "variants": {
                            n: {
                                "pruner": VARIANTS[n],
                                "epoch_ratio": mean_std([r["epoch_ratio"] for r in rs]),
                                "best_gap_nats": mean_std([r["best_gap_nats"] for r in rs]),
                                "unpruned_winner": dict(Counter(r["unpruned_winner"] for r in rs)),
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
