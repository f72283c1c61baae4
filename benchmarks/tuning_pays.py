"""Tuning pays: the best val ELBO of studies/quickstart.yaml against the common default
config (constant β = 1, latent 16, Adam 1e-3) trained for the same epochs on the same data
(goal ≥ 2 nats better), the study's wall time (goal ≤ 10 minutes on 2 CPU cores), and the
share of each trial's wall time spent outside model training (goal ≤ 2%).

    python benchmarks/tuning_pays.py --out benchmarks/results/tuning_pays_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import REPO, write

from tuner.api import run_study
from tuner.config import TrainConfig
from tuner.search.records import TRAIN_SECONDS_ATTR
from tuner.search.study_file import load_study_config
from tuner.vae.training import train


def overhead_shares(study) -> list[float]:
    """(trial wall time − time inside train()) / trial wall time, for each completed trial."""
    shares = []
    for t in study.trials:
        if t.state.name == "COMPLETE" and t.duration and TRAIN_SECONDS_ATTR in t.user_attrs:
            total = t.duration.total_seconds()
            shares.append((total - t.user_attrs[TRAIN_SECONDS_ATTR]) / total)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default=str(REPO / "studies" / "quickstart.yaml"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    cfg = load_study_config(args.study)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = run_study(
            cfg.model_copy(update={"enqueue_baseline": False}), storage_url=f"sqlite:///{tmp}/tuner.db"
        ).study
        study_s = time.perf_counter() - start
    default = TrainConfig(
        data=cfg.data,
        model=cfg.model.model_copy(update={"latent_dim": 16}),
        schedule={"name": "constant", "max_beta": 1.0},
        training=cfg.training.model_copy(update={"learning_rate": 1e-3}),
    )
    baseline = train(default).val_elbo
    shares = overhead_shares(study)
    write(
        {
            "study": cfg.name,
            "study_wall_s": study_s,
            "best_val_elbo": study.best_value,
            "best_params": study.best_trial.params,
            "default_config_val_elbo": baseline,
            "gain_nats": study.best_value - baseline,
            "overhead_share_median": statistics.median(shares) if shares else None,
            "overhead_share_max": max(shares) if shares else None,
            "trials": {s: sum(1 for t in study.trials if t.state.name == s) for s in ("COMPLETE", "PRUNED", "FAIL")},
        },
        args.out,
    )


if __name__ == "__main__":
    main()
