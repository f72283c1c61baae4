"""Compilation per trial on the JAX backend, and how much of it a study reuses.

A trial's programs depend on shapes (latent size, batch size, filters) and on the β family,
not on max_beta, the annealing length, free bits or the learning rate: those are variables.
This runs trials with the same shapes and different β and learning rates, one after another
in one process as a worker does, three ways:

- ``no_cache``: no persistent compilation cache, every trial compiles (the baseline);
- ``cold_cache``: a fresh cache directory: the first trial compiles, the next ones load;
- ``warm_cache``: a second process on that directory (another worker of the same study).

``--workers K`` adds what a study with K workers on one machine does to the cache: K
processes started together on a fresh directory (``concurrent_cold``: they race to write the
same programs), then K more on it (``concurrent_warm``), with the hits and misses of each and
every trial's val ELBO beside the no-cache run's (a corrupt or mismatched entry would crash a
worker or change its numbers).

For each trial: seconds outside the steady epochs (model build + compilation + first-epoch
surplus), their share of the trial, the programs it needed with the seconds spent compiling
or loading them, and how many the persistent cache served or missed.

    KERAS_BACKEND=jax python benchmarks/compile_reuse.py --out results/compile_reuse_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import mnist, write

# (schedule, max_beta, anneal_epochs, learning_rate): same family, other numbers.
TRIALS = [("linear", 1.0, 1, 1e-3), ("linear", 4.0, 2, 3e-4), ("linear", 0.3, 1, 2e-3), ("linear", 2.0, 3, 5e-4)]


def sequence(args: argparse.Namespace) -> None:
    import jax

    counts = {"compile_or_load_s": 0.0, "programs": 0, "cache_hits": 0, "cache_misses": 0}

    def on_duration(event: str, seconds: float, **_: object) -> None:
        if event == "/jax/core/compile/backend_compile_duration":  # a compile or a cache load
            counts["compile_or_load_s"] += seconds
            counts["programs"] += 1

    def on_event(event: str, **_: object) -> None:
        for name in ("cache_hits", "cache_misses"):
            if event == f"/jax/compilation_cache/{name}":
                counts[name] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    from tuner.config import TrainConfig
    from tuner.vae.data import Splits
    from tuner.vae.training import train

    train_x, val_x = mnist(args.n, 512)
    rows = []
    for name, max_beta, anneal, lr in TRIALS[: args.trials]:
        before = dict(counts)
        config = TrainConfig.model_validate(
            {
                "schedule": {"name": name, "max_beta": max_beta, "anneal_epochs": anneal},
                "training": {"epochs": args.epochs, "batch_size": args.batch, "learning_rate": lr},
            }
        )
        start = time.perf_counter()
        history = train(config, Splits(train_x, val_x, val_x)).history
        total = time.perf_counter() - start
        steady = statistics.median(h["epoch_time"] for h in history[1:])
        outside = total - steady * len(history)
        rows.append(
            {
                "max_beta": max_beta,
                "anneal_epochs": anneal,
                "learning_rate": lr,
                "trial_s": total,
                "steady_epoch_s": steady,
                "outside_epochs_s": outside,
                "outside_share": outside / total,
                "val_elbo": history[-1]["val_elbo"],
                **{k: counts[k] - before[k] for k in counts},
            }
        )
    print("RESULT " + json.dumps(rows))


def command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, __file__, "sequence", "--n", str(args.n), "--epochs", str(args.epochs),
            "--batch", str(args.batch), "--trials", str(args.trials)]  # fmt: skip


def environment(cache_dir: str | None, share: int = 1) -> dict[str, str]:
    from tuner.vae import jax_cache

    env = {k: v for k, v in os.environ.items() if k not in jax_cache.settings()}
    env["KERAS_BACKEND"] = "jax"
    if cache_dir:
        env.update(jax_cache.settings(cache_dir))  # as every `tuner` command sets them
    if share > 1:  # as `tuner launch --trials-per-gpu` shares one GPU's memory
        env.update({"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / share:.3f}"})
    return env


def parse(mode: str, stdout: str, stderr: str) -> list[dict]:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{mode} failed:\n{stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def run(mode: str, cache_dir: str | None, args: argparse.Namespace) -> list[dict]:
    # With --workers, the reference runs under the workers' memory settings (on a GPU they
    # can change the kernels chosen, and with them the last digits).
    env = environment(cache_dir, args.workers or 1)
    proc = subprocess.run(command(args), env=env, capture_output=True, text=True)
    return parse(mode, proc.stdout, proc.stderr)


def concurrent(mode: str, cache_dir: str, args: argparse.Namespace) -> dict:
    """``args.workers`` processes started together on one cache directory. Their output goes
    to files: a worker blocked on a full pipe would no longer race the others."""
    start = time.perf_counter()
    env = environment(cache_dir, args.workers)
    with contextlib.ExitStack() as stack:
        files = [
            (stack.enter_context(tempfile.TemporaryFile("w+")), stack.enter_context(tempfile.TemporaryFile("w+")))
            for _ in range(args.workers)
        ]
        procs = [subprocess.Popen(command(args), env=env, stdout=out, stderr=err, text=True) for out, err in files]
        for proc in procs:
            proc.wait()
        wall = time.perf_counter() - start
        workers, errors = [], []
        for out, err in files:
            out.seek(0)
            err.seek(0)
            try:
                workers.append(parse(mode, out.read(), err.read()))
            except SystemExit as failed:
                errors.append(str(failed)[-500:])
    return {
        "wall_s": wall,
        "errors": errors,
        "cache_hits": sum(r["cache_hits"] for w in workers for r in w),
        "cache_misses": sum(r["cache_misses"] for w in workers for r in w),
        "workers": workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "sequence"])
    parser.add_argument("--n", type=int, default=1024, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="also K concurrent workers on one cache")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.mode == "sequence":
        sequence(args)
        return
    result: dict = {"n_train": args.n, "epochs": args.epochs, "batch_size": args.batch}
    # With --workers (a GPU session's time box) the sequential comparison is left to the CPU runs.
    modes = ("no_cache",) if args.workers else ("no_cache", "cold_cache", "warm_cache")
    with tempfile.TemporaryDirectory() as cache:
        for mode in modes:
            result[mode] = run(mode, cache if mode != "no_cache" else None, args)
            write(result, args.out, quiet=True)  # a time-boxed run keeps what it measured
    if args.workers:
        reference = [r["val_elbo"] for r in result["no_cache"]]
        with tempfile.TemporaryDirectory() as cache:
            for mode in ("concurrent_cold", "concurrent_warm"):
                result[mode] = concurrent(mode, cache, args)
                result[mode]["cache_files"] = len(os.listdir(cache))
                result[mode]["max_val_elbo_diff_vs_no_cache"] = max(
                    (abs(r["val_elbo"] - ref) for w in result[mode]["workers"] for r, ref in zip(w, reference, strict=True)),
                    default=None,
                )  # fmt: skip
                write(result, args.out, quiet=True)
    import jax

    result["device"] = str(jax.devices()[0].device_kind)
    if "cold_cache" in result:
        later = {
            mode: statistics.mean(r["outside_epochs_s"] for r in result[mode][1:])
            for mode in ("no_cache", "cold_cache")
        }
        result["summary"] = {
            "first_trial_outside_s": {
                m: result[m][0]["outside_epochs_s"] for m in ("no_cache", "cold_cache", "warm_cache")
            },
            "later_trials_outside_s": later,
            "later_trials_outside_ratio_cache_vs_none": later["cold_cache"] / later["no_cache"],
            "warm_first_trial_ratio_vs_none": result["warm_cache"][0]["outside_epochs_s"]
            / result["no_cache"][0]["outside_epochs_s"],
        }
    write(result, args.out)


if __name__ == "__main__":
    main()
