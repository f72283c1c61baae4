"""Model quality at equal wall time: today's default VAE against the new choices.

Dynamically binarized MNIST, 10,000 training images, every config trained for the same
wall-clock budget (β = 1 constant, Adam), then scored on the full 10,000 validation images:
val ELBO (β = 1) and the val IWAE bound with k = 100. Configs:

* ``today``: conv [32, 64], latent 16, plain blocks, constant learning rate 1e-3;
* ``new_default``: the proposed default (latent 32, a cosine learning rate from 5e-3 to 0
  over the run, after one epoch of linear warm-up);
* ``gated``: the VampPrior-style model (gated blocks, a 300-unit dense layer, log-variance
  clipped to [−6, 2]) with the same schedule from 1e-3;
* ``new_default_iwae``: the new default trained on the IWAE bound with k = 3.

A decaying schedule needs to know the run's length, as a study trial does (its epochs): each
config first trains 3 epochs to time one (not counted in the budget), then plans as many
epochs as fit in the budget; the budget still stops training if the plan was optimistic.

Goals: ``gain_nats`` (new_default's val ELBO − today's) ≥ 3, and ``iwae_gain_nats`` (the
IWAE-trained model's val IWAE bound − the ELBO-trained one's, both k = 100) > 0.

    python benchmarks/model_quality.py            # ~25 minutes on 2 CPU cores (4 × 240 s + scoring)
    python benchmarks/model_quality.py --quick    # ~2 minutes: a smoke test, figures meaningless
    python benchmarks/model_quality.py --epochs 17 --configs new_default new_default_iwae \\
        --out benchmarks/results/model_quality_equal_epochs.json   # the same epochs, not the same time
    python benchmarks/model_quality.py --quickstart   # ~1 minute: the same configs in a study trial
    python benchmarks/model_quality.py --pair runs/best/config.yaml --budget 40 --n-train 0 \\
        --out results/iwae_equal_time.json   # one searched config on the ELBO and on IWAE, equal seconds

``--quickstart`` checks whether the winner holds where the product is first met: trials of
``studies/quickstart.yaml`` (8-bit grey MNIST under the discretized logistic, 5,000 training
and 1,000 validation images, 8 epochs, constant β = 1), ``today`` against ``new_default`` and
``new_default`` from 2e-3, each for the trial's epochs (model_quality_quickstart.json).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import yaml
from common import REPO, device_name, keras, write

from tuner.config import DataConfig, TrainConfig
from tuner.vae.data import Splits, load_splits
from tuner.vae.evaluation import iwae_nll
from tuner.vae.training import train

TODAY: dict[str, Any] = {
    "model": {"latent_dim": 16, "filters": [32, 64]},
    "training": {"learning_rate": 1e-3},
}
COSINE: dict[str, Any] = {"learning_rate": 5e-3, "lr_schedule": "cosine", "lr_warmup_epochs": 1}
NEW_DEFAULT: dict[str, Any] = {"model": {"latent_dim": 32, "filters": [32, 64]}, "training": COSINE}
CONFIGS: dict[str, dict[str, Any]] = {
    "today": TODAY,
    "new_default": NEW_DEFAULT,
    "gated": {
        "model": {**NEW_DEFAULT["model"], "block": "gated", "hidden": 300, "log_var_clip": [-6, 2]},
        "training": {**COSINE, "learning_rate": 1e-3},
    },
    "new_default_iwae": {"model": NEW_DEFAULT["model"], "training": {**COSINE, "objective": "iwae", "iwae_k": 3}},
}
IWAE_CONFIG = "new_default_iwae"


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs: dict | None = None) -> None:
        self.times = [time.perf_counter()]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.times.append(time.perf_counter())


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


def planned_epochs(config: TrainConfig, splits: Splits, budget: float) -> int:
    """How many epochs of ``config`` fit in ``budget`` seconds, from a 3-epoch timing run."""
    times = EpochTimes()
    train(config, splits, epochs=3, callbacks=[times])
    seconds = [b - a for a, b in itertools.pairwise(times.times)]
    per_epoch = 1.05 * (seconds[1] + seconds[2]) / 2  # a margin: later epochs vary a little
    return max(1, int((budget - (seconds[0] - per_epoch)) / per_epoch))


def run_one(
    name: str, sections: dict[str, Any], splits: Splits, budget: float, k: int, n_iwae: int, fixed_epochs: int | None
) -> dict:
    content = {
        "data": {"dataset": "mnist", "dynamic_binarization": True},
        "schedule": {"name": "constant", "max_beta": 1.0},
        "training": {"epochs": 10_000, "batch_size": 128, "seed": 0, **sections["training"]},  # planned below
        "model": sections["model"],
    }
    config = TrainConfig.model_validate(content)
    # Train with a small validation subset (per-epoch validation eats into the budget); score
    # every model on the same full validation split afterwards.
    train_splits = Splits(train=splits.train, val=splits.val[:1000], test=splits.test[:1])
    # A constant rate needs no plan: it trains until the budget stops it.
    if fixed_epochs:  # --epochs: equal epochs, no clock
        epochs, budget = fixed_epochs, float("inf")
    elif config.training.lr_schedule == "constant":
        epochs = 10_000
    else:
        epochs = planned_epochs(config, train_splits, budget)
    clock = WallClock(budget)
    start = time.perf_counter()
    result = train(config, train_splits, epochs=epochs, callbacks=[clock])
    train_seconds = time.perf_counter() - start
    metrics = result.model.evaluate(splits.val, batch_size=500, verbose=0, return_dict=True)
    iwae = float(iwae_nll(result.model, splits.val[:n_iwae], k=k).mean())
    row = {
        "val_elbo": float(metrics["elbo"]),
        "val_recon": float(metrics["recon"]),
        "val_kl": float(metrics["kl"]),
        f"val_iwae_k{k}": -iwae,
        "epochs": clock.epochs,
        "planned_epochs": epochs,
        "train_seconds": train_seconds,
        "params": int(result.model.count_params()),
        "config": {"model": sections["model"], "training": sections["training"]},
    }
    print(f"{name}: val ELBO {row['val_elbo']:.2f}, IWAE(k={k}) {-iwae:.2f}, {clock.epochs} epochs", flush=True)
    return row


def pair_sections(config_path: Path) -> dict[str, dict[str, Any]]:
    """A trained config's model and training sections, once on the ELBO and once on the IWAE bound.

    The config is what a search chose (``tuner refit``'s ``config.yaml``); only the objective
    differs between the two, with the config's own ``iwae_k`` where it trained on IWAE, else 5
    (Burda et al.'s smallest k with a clear gain).
    """
    config = TrainConfig.model_validate(
        {key: value for key, value in yaml.safe_load(config_path.read_text()).items() if key != "provenance"}
    )
    training = config.training.model_dump(exclude={"epochs", "objective", "iwae_k"})
    k = config.training.iwae_k if config.training.objective == "iwae" else 5
    model = config.model.model_dump()
    return {
        "pair_elbo": {"model": model, "training": {**training, "objective": "elbo"}},
        f"pair_iwae_k{k}": {"model": model, "training": {**training, "objective": "iwae", "iwae_k": k}},
    }


def quickstart_trials(out: Path) -> None:
    """``today`` against the binarized-MNIST winner in a quickstart trial (see the docstring)."""
    study = yaml.safe_load((REPO / "studies" / "quickstart.yaml").read_text())
    configs = {
        "today": TODAY,
        "new_default": NEW_DEFAULT,
        "new_default_lr2e-3": {**NEW_DEFAULT, "training": {**COSINE, "learning_rate": 2e-3}},
    }
    rows = {}
    for name, sections in configs.items():
        content = {
            "data": study["data"],
            "schedule": {"name": "constant", "max_beta": 1.0},
            "training": {**study["training"], **sections["training"]},
            "model": {**study["model"], **sections["model"]},
        }
        result = train(TrainConfig.model_validate(content))
        rows[name] = {
            "val_elbo": result.val_elbo,
            "val_elbo_per_epoch": [h["val_elbo"] for h in result.history],
            "likelihood": result.config.model.likelihood,
            "config": {"model": sections["model"], "training": sections["training"]},
        }
        print(f"{name}: val ELBO {result.val_elbo:.2f}", flush=True)
    write(
        {
            "gain_nats": rows["new_default"]["val_elbo"] - rows["today"]["val_elbo"],
            "epochs": study["training"]["epochs"],
            "backend": keras.backend.backend(),
            "configs": rows,
        },
        str(out),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per config")
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=100, help="importance samples of the val IWAE bound")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny data and budget")
    parser.add_argument("--epochs", type=int, help="train every config for exactly this many epochs (no budget)")
    parser.add_argument("--quickstart", action="store_true", help="the configs in a quickstart study trial")
    parser.add_argument("--out", default=None)
    parser.add_argument("--pair", type=Path, help="a trained config.yaml: it on the ELBO and on IWAE, --budget s each")
    parser.add_argument(
        "--configs", nargs="*", choices=list(CONFIGS), help="run only these; the others' rows are kept from --out"
    )
    args = parser.parse_args()
    if args.quickstart:
        quickstart_trials(Path(args.out or REPO / "benchmarks" / "results" / "model_quality_quickstart.json"))
        return
    n_train, n_val, budget, k, n_iwae = args.n_train or None, None, args.budget, args.k, 10_000
    if args.quick:
        n_train, n_val, budget, k, n_iwae = 1000, 500, 8.0, 10, 200
    splits = load_splits(DataConfig(dataset="mnist", dynamic_binarization=True, n_train=n_train, n_val=n_val))
    default_out = REPO / "benchmarks" / "results" / ("model_quality_quick.json" if args.quick else "model_quality.json")
    out = Path(args.out or default_out)
    if args.pair:
        rows = {}
        for name, sections in pair_sections(args.pair).items():  # written after each: a cut run keeps its rows
            rows[name] = run_one(name, sections, splits, budget, k, n_iwae, args.epochs)
            scores = [row[f"val_iwae_k{k}"] for row in rows.values()]
            result = {
                "iwae_gain_nats": scores[1] - scores[0] if len(scores) == 2 else None,
                "budget_seconds_per_config": budget,
                "n_train": len(splits.train),
                "n_val": len(splits.val),
                "backend": keras.backend.backend(),
                "device": device_name() if keras.backend.backend() == "jax" else "tensorflow",
                "quick": args.quick,
                "configs": rows,
            }
            write(result, str(out))
        return
    rows = json.loads(out.read_text())["configs"] if args.configs and out.exists() else {}
    for name in args.configs or list(CONFIGS):
        rows[name] = run_one(name, CONFIGS[name], splits, budget, k, n_iwae, args.epochs)

    def gain(new: str, old: str, key: str) -> float | None:  # None when a run left one out
        return rows[new][key] - rows[old][key] if new in rows and old in rows else None

    result = {
        "gain_nats": gain("new_default", "today", "val_elbo"),
        "iwae_gain_nats": gain(IWAE_CONFIG, "new_default", f"val_iwae_k{k}"),
        "budget_seconds_per_config": None if args.epochs else budget,
        "epochs_per_config": args.epochs,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "backend": keras.backend.backend(),
        "quick": args.quick,
        "configs": rows,
    }
    write(result, str(out))


if __name__ == "__main__":
    main()
