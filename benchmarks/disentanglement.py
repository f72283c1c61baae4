"""Disentanglement against β on generated sprites (2-core CPU, about 20 minutes).

1. β ∈ {1, 4, 16}, three seeds each, every other setting fixed: MIG and DCI of the encoder's
   means on the validation split, mean ± std per β. The published direction (Higgins et al.
   2017; Chen et al. 2018; Locatello et al. 2019): β > 1 raises MIG, up to a point.
2. A study maximising MIG (``objective: {name: disentanglement, metric: mig}``) over max β
   and the learning rate: does its best trial beat β = 1's mean MIG by more than β = 1's
   seed spread (std)? The baseline is the β = 1 runs of part 1, in the same run.

    python benchmarks/disentanglement.py --out benchmarks/results/disentanglement.json

A GPU can afford the published setting, 64 px and more positions, for many more steps::

    python benchmarks/disentanglement.py --epochs 100 --sprites '{"image_size": 64, "positions": 32, "shapes": 3}'

``--quick``: a smoke run of a minute or two whose figures mean nothing; ``--epochs N``: longer
runs (published MIG curves train for ~300,000 steps; 20 epochs here are ~670). What each part
measured is written as soon as it is done (an interrupted run keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any

from common import write
from pydantic import ValidationError

from tuner.api import run_study
from tuner.config import TrainConfig, format_validation_error
from tuner.search.records import SCORES_ATTR
from tuner.search.study_file import validate_study
from tuner.vae import disentanglement as dis
from tuner.vae.data import load_splits
from tuner.vae.training import train

# Shape × scale × x × y (orientation fixed: a square repeats itself every quarter turn, and
# these short runs cannot learn a factor that is half ambiguous): 2 × 6 × 16 × 16 = 3,072
# images of 32×32, small enough for ~40 s trials on 2 cores.
DATA: dict[str, Any] = {
    "dataset": "sprites",
    "sprites": {"shapes": 2, "scales": 6, "orientations": 1, "positions": 16, "image_size": 32},
}
MODEL: dict[str, Any] = {"latent_dim": 6, "filters": [32, 64], "hidden": 128}
TRAINING: dict[str, Any] = {"epochs": 20, "batch_size": 64, "learning_rate": 2e-3}
BETAS = (1.0, 4.0, 16.0)


def one_run(beta: float, seed: int, data: dict[str, Any], training: dict[str, Any], splits: Any) -> dict[str, Any]:
    config = TrainConfig.model_validate(
        {
            "data": data,
            "model": MODEL,
            "schedule": {"name": "constant", "max_beta": beta},
            "training": {**training, "seed": seed},
        }
    )
    start = time.perf_counter()
    result = train(config, splits)
    assert splits.val_factors is not None
    scores = dis.score(dis.encoder_means(result.model, splits.val), splits.val_factors)
    return {
        "beta": beta,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "val_elbo": result.history[-1]["val_elbo"],
        **scores.as_dict(),
    }


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true", help="a smoke run; its figures mean nothing")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"epochs per run (default {TRAINING['epochs']}; a GPU can afford 200+)"
    )
    parser.add_argument(
        "--sprites",
        default=None,
        help='JSON overrides of the generator, e.g. \'{"image_size": 64, "positions": 32, "shapes": 3}\' (dSprites-like, for a GPU)',
    )
    parser.add_argument("--betas", default=None, help="comma-separated β values (default 1,4,16)")
    args = parser.parse_args()
    try:
        betas = tuple(float(b) for b in args.betas.split(",")) if args.betas else BETAS
        overrides = json.loads(args.sprites or "{}")
        if not isinstance(overrides, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        parser.error(f"--sprites must be a JSON object and --betas comma-separated numbers ({exc})")
    data = {**DATA, "sprites": {**DATA["sprites"], **overrides}}
    training = {**TRAINING, "epochs": 2} if args.quick else {**TRAINING, "epochs": args.epochs or TRAINING["epochs"]}
    n_trials, seeds = (3, 2) if args.quick else (args.trials, args.seeds)
    result: dict[str, Any] = {
        "settings": {"data": data, "model": MODEL, "training": training, "betas": betas, "seeds": seeds},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "quick": args.quick,
    }
    try:
        data_config = TrainConfig.model_validate({"data": data}).data
    except ValidationError as exc:
        parser.error(format_validation_error(exc, "--sprites"))
    splits = load_splits(data_config)
    result["n_train"], result["n_val"] = len(splits.train), len(splits.val)

    start = time.perf_counter()
    runs = [one_run(beta, seed, data, training, splits) for beta in betas for seed in range(seeds)]
    by_beta = {
        str(beta): {
            key: summary([r for r in runs if r["beta"] == beta], key)
            for key in ("mig", "dci_disentanglement", "dci_completeness", "sap", "val_elbo")
        }
        for beta in betas
    }
    result["sweep"] = {"runs": runs, "by_beta": by_beta, "seconds": time.perf_counter() - start}
    for beta, row in by_beta.items():
        print(
            f"beta {beta}: MIG {row['mig']['mean']:.3f} ± {row['mig']['std']:.3f}, DCI-D {row['dci_disentanglement']['mean']:.3f} ± {row['dci_disentanglement']['std']:.3f}",
            flush=True,
        )
    write(result, args.out, quiet=True)

    study = validate_study(
        {
            "name": "sprites_mig",
            "objective": {"name": "disentanglement", "metric": "mig"},
            "data": data,
            "model": MODEL,
            "schedule": {"name": "constant"},
            "training": {**training, "seed": 0},
            "search": {
                "max_beta": {"low": 1.0, "high": 32.0, "log": True},
                "learning_rate": {"low": 1e-3, "high": 4e-3, "log": True},
                "anneal_epochs": 0,
                "latent_dim": MODEL["latent_dim"],
            },
            "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 5},
            "pruner": {"name": "successive_halving", "min_resource": 5},
            "budget": {"n_trials": n_trials},
            "enqueue_baseline": False,
        }
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        found = run_study(study, storage_url=f"sqlite:///{tmp}/tuner.db", log=lambda _: None).study
    best = found.best_trial
    baseline = by_beta[str(betas[0])]["mig"]
    result["study"] = {
        "seconds": time.perf_counter() - start,
        "n_complete": sum(t.state.name == "COMPLETE" for t in found.trials),
        "n_pruned": sum(t.state.name == "PRUNED" for t in found.trials),
        "best": {"number": best.number, "params": best.params, "scores": best.user_attrs[SCORES_ATTR]},
        "best_mig_minus_beta1_mean": best.value - baseline["mean"],
        "beta1_mig_std": baseline["std"],
        "beats_beta1_by_more_than_its_spread": best.value - baseline["mean"] > baseline["std"],
    }
    print(
        f"study: best trial {best.number} MIG {best.value:.3f} ({best.params}); beta 1: {baseline['mean']:.3f} ± "
        f"{baseline['std']:.3f}; {result['study']['seconds']:.0f} s",
        flush=True,
    )
    write(result, args.out, quiet=True)


if __name__ == "__main__":
    main()
