"""Model quality at equal wall time: today's default VAE against the new choices (issue 10).

Dynamically binarized MNIST, 10,000 training images, every config trained for the same
wall-clock budget (β = 1 constant, Adam), then scored on the full 10,000 validation images:
val ELBO (β = 1) and the val IWAE bound with k = 100. Configs:

* ``today``: conv [32, 64], latent 16, plain blocks, constant learning rate 1e-3;
* ``new_default``: the recommended model (gated blocks, a 300-unit dense layer, latent 32,
  log-variance clipped to [−6, 2], Burda et al.'s step decay of the learning rate);
* ``residual``: the same with residual blocks;
* ``new_default_iwae``: the new default trained on the IWAE bound with k = 5.

Goals: ``gain_nats`` (new_default's val ELBO − today's) ≥ 3, and ``iwae_gain_nats`` (the
IWAE-trained model's val IWAE bound − the ELBO-trained one's, both k = 100) > 0.

    python benchmarks/model_quality.py            # ~25 minutes on 2 CPU cores (4 × 240 s + scoring)
    python benchmarks/model_quality.py --quick    # ~2 minutes: a smoke test, figures meaningless
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from common import REPO, keras, write

from tuner.config import DataConfig, TrainConfig
from tuner.vae.data import Splits, load_splits
from tuner.vae.evaluation import iwae_nll
from tuner.vae.training import train

TODAY: dict[str, Any] = {
    "model": {"latent_dim": 16, "filters": [32, 64]},
    "training": {"learning_rate": 1e-3},
}
NEW_DEFAULT: dict[str, Any] = {
    "model": {"latent_dim": 32, "filters": [32, 64], "block": "gated", "hidden": 300, "log_var_clip": [-6, 2]},
    "training": {"learning_rate": 1e-3, "lr_schedule": "step_decay"},
}
CONFIGS: dict[str, dict[str, Any]] = {
    "today": TODAY,
    "new_default": NEW_DEFAULT,
    "residual": {"model": {**NEW_DEFAULT["model"], "block": "residual"}, "training": NEW_DEFAULT["training"]},
    "new_default_iwae": {
        "model": NEW_DEFAULT["model"],
        "training": {**NEW_DEFAULT["training"], "objective": "iwae", "iwae_k": 5},
    },
}


class WallClock(keras.callbacks.Callback):
    """Stops training once ``seconds`` have passed (checked after every batch)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = time.perf_counter()
        self.epochs = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs = epoch + 1


def run_one(name: str, sections: dict[str, Any], splits: Splits, budget: float, k: int, n_iwae: int) -> dict:
    content = {
        "data": {"dataset": "mnist", "dynamic_binarization": True},
        "schedule": {"name": "constant", "max_beta": 1.0},
        "training": {"epochs": 10_000, "batch_size": 128, "seed": 0, **sections["training"]},
        "model": sections["model"],
    }
    config = TrainConfig.model_validate(content)
    # Train with a small validation subset (per-epoch validation eats into the budget); score
    # every model on the same full validation split afterwards.
    train_splits = Splits(train=splits.train, val=splits.val[:1000], test=splits.test[:1])
    clock = WallClock(budget)
    start = time.perf_counter()
    result = train(config, train_splits, callbacks=[clock])
    train_seconds = time.perf_counter() - start
    metrics = result.model.evaluate(splits.val, batch_size=500, verbose=0, return_dict=True)
    iwae = float(iwae_nll(result.model, splits.val[:n_iwae], k=k).mean())
    row = {
        "val_elbo": float(metrics["elbo"]),
        "val_recon": float(metrics["recon"]),
        "val_kl": float(metrics["kl"]),
        f"val_iwae_k{k}": -iwae,
        "epochs": clock.epochs,
        "train_seconds": train_seconds,
        "params": int(result.model.count_params()),
        "config": {"model": sections["model"], "training": sections["training"]},
    }
    print(f"{name}: val ELBO {row['val_elbo']:.2f}, IWAE(k={k}) {-iwae:.2f}, {clock.epochs} epochs", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per config")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=100, help="importance samples of the val IWAE bound")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny data and budget")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n_train, n_val, budget, k, n_iwae = args.n_train, None, args.budget, args.k, 10_000
    if args.quick:
        n_train, n_val, budget, k, n_iwae = 1000, 500, 8.0, 10, 200
    splits = load_splits(DataConfig(dataset="mnist", dynamic_binarization=True, n_train=n_train, n_val=n_val))
    rows = {name: run_one(name, sections, splits, budget, k, n_iwae) for name, sections in CONFIGS.items()}
    result = {
        "gain_nats": rows["new_default"]["val_elbo"] - rows["today"]["val_elbo"],
        "iwae_gain_nats": rows["new_default_iwae"][f"val_iwae_k{k}"] - rows["new_default"][f"val_iwae_k{k}"],
        "budget_seconds_per_config": budget,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "backend": keras.backend.backend(),
        "quick": args.quick,
        "configs": rows,
    }
    default_out = REPO / "benchmarks" / "results" / ("model_quality_quick.json" if args.quick else "model_quality.json")
    write(result, args.out or str(default_out))


if __name__ == "__main__":
    main()
