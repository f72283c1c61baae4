"""Replays pruners on finished unpruned studies: the same trials, in the same order, with the
same curves, each pruner deciding epoch by epoch as it would have live. No training.

    python benchmarks/pruning.py --seeds 8 --variants none --keep /tmp/unpruned   # the studies
    python benchmarks/pruning_replay.py /tmp/unpruned/none-*.db                       # seconds

What it isolates: the pruner's judgment. In a live study a pruned trial also changes what the
sampler proposes next, so the live gap (benchmarks/pruning.py) mixes two things: trials the
pruner stopped wrongly, and a search that took another path. Here the path is fixed, so a gap
is always a pruning mistake. Per variant: the epoch ratio, the gap between the best trial and
the best trial the pruner let finish (nats), and how often the best trial itself was pruned.

Also ``warmup_rank_shift``: per epoch, a trial's rank at that epoch minus its final rank
(0 = best), averaged over the trials still warming up then and over those on their β plateau.
Positive means "looks worse than it ends": the handicap schedule-aware pruning protects.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import optuna
from common import REPO, write
from pruning import VARIANTS, mean_std

from tuner.search.pruning import ScheduleAwarePruner, build_pruner, prunable_epochs
from tuner.search.records import CONFIG_ATTR, PRUNABLE_ATTR, SCHEDULE_ATTR, STEPS_ATTR, curve_key, curves
from tuner.search.study_file import PrunerConfig
from tuner.vae.schedules import deserialize

# Replay only: pruners that no study file builds any more, kept to measure what replaced them.
LEGACY = {
    # `name: hyperband` in earlier versions: Optuna's HyperbandPruner inside ScheduleAwarePruner.
    "wrapped_hyperband": {"name": "hyperband", "grace_epochs": 1, "min_resource": 1, "reduction_factor": 3},
}


def build(name: str) -> tuple[PrunerConfig, optuna.pruners.BasePruner]:
    if name in LEGACY:
        config = PrunerConfig.model_validate(LEGACY[name])
        optuna_pruner = optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
        return config, ScheduleAwarePruner(optuna_pruner)
    config = PrunerConfig.model_validate(VARIANTS[name])
    return config, build_pruner(config)


def replay(trials: list[optuna.trial.FrozenTrial], name: str, study_name: str) -> dict[str, Any]:
    """Runs ``trials`` (complete, unpruned) again under the pruner of variant ``name``, in a
    study of the same name (hyperband deals trials to brackets by study name and number)."""
    config, pruner = build(name)
    study = optuna.create_study(study_name=study_name, direction="maximize", pruner=pruner)
    finished: dict[int, float] = {}
    epochs_trained = 0
    for source in trials:
        rows = curves(source)
        schedule = deserialize(source.user_attrs[SCHEDULE_ATTR])
        trial = study.ask()
        trial.set_user_attr(CONFIG_ATTR, source.user_attrs[CONFIG_ATTR])
        trial.set_user_attr(SCHEDULE_ATTR, source.user_attrs[SCHEDULE_ATTR])
        trial.set_user_attr(
            PRUNABLE_ATTR, prunable_epochs(schedule, source.user_attrs[STEPS_ATTR], len(rows), config.grace_epochs)
        )
        for epoch, row in enumerate(rows, start=1):
            epochs_trained += 1
            trial.set_user_attr(curve_key(epoch), row)
            trial.report(row["val_elbo"], epoch)
            if epoch < len(rows) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, rows[-1]["val_elbo"])
            finished[source.number] = rows[-1]["val_elbo"]
    best = max(trials, key=lambda t: t.value or -1e30)
    total = sum(len(curves(t)) for t in trials)
    return {
        "epoch_ratio": epochs_trained / total,
        "best_gap_nats": (best.value or 0.0) - max(finished.values()),
        "winner_pruned": best.number not in finished,
    }


def warmup_rank_shift(studies: list[list[optuna.trial.FrozenTrial]]) -> dict[int, dict[str, float | None]]:
    """See the module docstring; the warm-up counts ``grace_epochs: 1``, as the benchmark's study."""
    shifts: dict[tuple[int, bool], list[int]] = {}
    for trials in studies:
        final = {t.number: rank for rank, t in enumerate(sorted(trials, key=lambda t: -(t.value or -1e30)))}
        elbos = {t.number: [row["val_elbo"] for row in curves(t)] for t in trials}  # parsed once
        for epoch in range(1, min(map(len, elbos.values()))):
            ordered = sorted(trials, key=lambda t: -elbos[t.number][epoch - 1])
            for rank, trial in enumerate(ordered):
                warming = epoch not in (trial.user_attrs.get(PRUNABLE_ATTR) or [])
                shifts.setdefault((epoch, warming), []).append(rank - final[trial.number])
    epochs = sorted({epoch for epoch, _ in shifts})
    return {
        epoch: {
            kind: statistics.fmean(shifts[(epoch, warming)]) if shifts.get((epoch, warming)) else None
            for kind, warming in (("warming_up", True), ("plateau", False))
        }
        for epoch in epochs
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="SQLite files of unpruned studies (pruning.py --keep)")
    names = [v for v in VARIANTS if v != "none"] + list(LEGACY)
    parser.add_argument("--variants", nargs="*", default=names, choices=names)
    parser.add_argument("--n-trials", type=int, help="replay only each study's first N trials")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pruning_replay.json"))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sources = []
    for path in args.studies:
        storage = f"sqlite:///{path}"
        for summary in optuna.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            trials = sorted((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
            if any(t.state.name == "PRUNED" for t in study.trials):
                sys.exit(f"{path}: study {summary.study_name!r} was pruned; replay needs an unpruned study")
            sources.append((summary.study_name, trials[: args.n_trials]))
    results: dict[str, Any] = {
        "n_studies": len(sources),
        "n_trials": [len(trials) for _, trials in sources],
        "studies": [name for name, _ in sources],
        "warmup_rank_shift": warmup_rank_shift([trials for _, trials in sources]),
        "variants": {},
    }
    for epoch, shift in results["warmup_rank_shift"].items():
        cells = [f"{kind} {'-' if v is None else f'{v:+.2f}'}" for kind, v in shift.items()]
        print(f"epoch {epoch}: rank then - final rank: {', '.join(cells)}")
    for name in args.variants:
        runs = [replay(trials, name, study_name) for study_name, trials in sources]
        results["variants"][name] = {
            "pruner": LEGACY.get(name) or VARIANTS[name],
            "epoch_ratio": mean_std([r["epoch_ratio"] for r in runs]),
            "best_gap_nats": mean_std([r["best_gap_nats"] for r in runs]),
            "winner_pruned": sum(r["winner_pruned"] for r in runs),
            "runs": runs,
        }
        ratio = statistics.fmean(r["epoch_ratio"] for r in runs)
        gap = statistics.fmean(r["best_gap_nats"] for r in runs)
        lost = sum(r["winner_pruned"] for r in runs)
        print(f"{name:32s} epochs {ratio:.2f}  gap {gap:+.2f}  winner pruned {lost}/{len(runs)}", flush=True)
    write(results, args.out, quiet=True)


if __name__ == "__main__":
    main()
