"""GPU benchmark (JAX backend): one trial's throughput, a full MNIST epoch, several trials
sharing one GPU, and compilation cost, against a plain Keras/JAX reference in the same run.

    KERAS_BACKEND=jax python benchmarks/gpu.py --out results/   # on the GPU machine
    KERAS_BACKEND=jax python benchmarks/gpu.py --quick           # a small smoke run on a CPU

Sections (``--sections``, all by default):

- ``single``: images/s of one trial at batch 128 and 512 with ``steps_per_execution`` 16 run
  four ways: Keras's loop of single steps, tuner's one-program ``lax.scan`` (``fused``,
  tuner/scan_steps.py), batches gathered in accelerator memory (``device``, tuner/batches.py),
  and both; bfloat16 and float16 mixed precision; the plain Keras reference alongside.
- ``overhead``: a tiny model (8 filters, batch 32), so that the per-step cost outside the
  arithmetic shows: milliseconds per step for 1 step, 16 as a Keras loop, 16 fused.
- ``concurrent``: aggregate images/s of 1, 2, 4, 8 trials sharing the GPU.
- ``compile``: in one process with the persistent cache on, the seconds outside the training
  epochs of a trial with a new program, one differing only in β and learning rate, and one
  with a new latent size.

Writes gpu.json (and prints it) after each section. See docs/gpu.md for running
it on the offline GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import device_name, mnist, time_reference, time_tuner, write

# Ways to run steps_per_execution = 16 (tuner/scan_steps.py, tuner/batches.py).
VARIANTS = {
    "keras_loop": {},
    "fused": {"fused_steps": True},
    "device": {"data_on_device": True},
    "fused_device": {"fused_steps": True, "data_on_device": True},
}


def single_trial(
    n: int, epochs: int, rows: dict, save: Callable[[], None], batches: tuple[int, ...] = (128, 512)
) -> None:
    """Fills ``rows``, saving after each one (a time-boxed run keeps what it measured). With
    ``batches`` (128,) only the batch-128 comparison runs."""
    train, val = mnist(n, 10_000 if n >= 50_000 else 500)
    best = VARIANTS["fused_device"]
    runs: list[tuple[str, Callable[[], dict]]] = []
    for batch in batches:
        runs.append(
            (f"reference_b{batch}_spe16", lambda b=batch: time_reference(train, val, b, epochs, steps_per_execution=16))
        )
        for name, options in VARIANTS.items():
            runs.append(
                (
                    f"tuner_b{batch}_spe16_{name}",
                    lambda b=batch, o=options: time_tuner(train, val, b, epochs, steps_per_execution=16, **o),
                )
            )
    if 128 in batches:
        runs.append(
            (
                "tuner_b128_spe64_fused_device",
                lambda: time_tuner(train, val, 128, epochs, steps_per_execution=64, **best),
            )
        )
    if batches == (128, 512):  # the full comparison: single steps and mixed precision too
        runs.append(("tuner_b128_spe1", lambda: time_tuner(train, val, 128, epochs)))
        runs.append(("reference_b128_spe1", lambda: time_reference(train, val, 128, epochs)))
        for precision in ("bfloat16", "float16"):
            runs.append(
                (
                    f"tuner_b512_spe16_fused_device_{precision}",
                    lambda p=precision: time_tuner(
                        train, val, 512, epochs, steps_per_execution=16, mixed_precision=p, **best
                    ),
                )
            )

    def ratios() -> None:  # after every row: a time-boxed run keeps the comparisons it has
        for batch in batches:
            have = {
                v: rows[f"tuner_b{batch}_spe16_{v}"]["images_per_s"]
                for v in VARIANTS
                if f"tuner_b{batch}_spe16_{v}" in rows
            }
            if "keras_loop" in have and f"reference_b{batch}_spe16" in rows:
                rows[f"ratio_b{batch}_spe16_keras_loop_over_reference"] = (
                    have["keras_loop"] / rows[f"reference_b{batch}_spe16"]["images_per_s"]
                )
            for name in ("fused", "device", "fused_device"):
                if "keras_loop" in have and name in have:
                    rows[f"ratio_b{batch}_{name}_over_keras_loop"] = have[name] / have["keras_loop"]
            if have:
                rows[f"fastest_b{batch}"] = max(have, key=have.__getitem__)

    for name, run in runs:
        print(f"single: {name}", file=sys.stderr, flush=True)
        rows[name] = run()
        ratios()
        save()


def step_overhead(n: int) -> dict:
    """Milliseconds per step of a model too small to keep any device busy."""
    train, val = mnist(n, 500)
    tiny = {"filters": [8], "latent_dim": 2}
    rows = {
        "spe1": time_tuner(train, val, 32, 3, model=tiny),
        "spe16_keras_loop": time_tuner(train, val, 32, 3, model=tiny, steps_per_execution=16),
        "spe16_fused": time_tuner(train, val, 32, 3, model=tiny, steps_per_execution=16, fused_steps=True),
    }
    out = {name: {"ms_per_step": 1000 * 32 / row["images_per_s"], **row} for name, row in rows.items()}
    out["ratio_fused_over_keras_loop_steps_per_s"] = (
        out["spe16_keras_loop"]["ms_per_step"] / out["spe16_fused"]["ms_per_step"]
    )
    return out


def compile_cost(n: int) -> dict:
    """Run in a child process whose persistent cache directory is new (see ``compile``)."""
    from tuner.vae import jax_cache

    env = {**os.environ, **jax_cache.settings(tempfile.mkdtemp(prefix="jax_cache_"))}
    proc = subprocess.run([sys.executable, __file__, "compile", "--n", str(n)], env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else {"error": proc.stderr.strip().splitlines()[-3:]}


def compile_sequence(n: int) -> dict:
    """A new program, the same program with other β and learning rate, a new latent size."""
    train, val = mnist(n, 1000)
    from tuner.config import TrainConfig
    from tuner.vae.data import Splits
    from tuner.vae.training import train as train_config

    out = {}
    trials = [
        ("latent_8_new", 8, 1.0, 1e-3),
        ("latent_8_other_beta_lr", 8, 3.0, 3e-4),
        ("latent_32_new", 32, 1.0, 1e-3),
    ]
    for name, latent, max_beta, lr in trials:
        config = TrainConfig.model_validate(
            {
                "model": {"latent_dim": latent},
                "schedule": {"name": "linear", "max_beta": max_beta, "anneal_epochs": 1},
                "training": {"epochs": 3, "batch_size": 512, "steps_per_execution": 16, "learning_rate": lr},
            }
        )
        t0 = time.perf_counter()
        history = train_config(config, Splits(train, val, val)).history
        total = time.perf_counter() - t0
        steady = min(h["epoch_time"] for h in history[1:])
        outside = total - steady * len(history)
        out[name] = {
            "outside_epochs_s": outside,
            "trial_s": total,
            "steady_epoch_s": steady,
            "share_of_30_epoch_trial": outside / (outside + 30 * steady),
        }
    return out


def worker(args: argparse.Namespace) -> None:
    train, val = mnist(args.n, 1000)
    result = time_tuner(train, val, args.batch, args.epochs, steps_per_execution=args.spe, **VARIANTS[args.variant])
    print("RESULT " + json.dumps(result))


def concurrent(n: int, epochs: int, levels: list[int], variant: str) -> dict:
    """Aggregate images/s of K trials on one GPU, each a process with 1/K of the memory."""
    out: dict = {"variant": variant}
    for k in levels:
        env = {
            **os.environ,
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / k:.3f}",
        }
        cmd = [
            sys.executable,
            __file__,
            "worker",
            "--n",
            str(n),
            "--epochs",
            str(epochs),
            "--batch",
            "512",
            "--spe",
            "16",
            "--variant",
            variant,
        ]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(k)
        ]
        results = []
        for p in procs:
            stdout, stderr = p.communicate()
            line = [row for row in stdout.splitlines() if row.startswith("RESULT ")]
            if line:
                results.append(json.loads(line[-1][7:]))
            else:
                results.append({"error": stderr.strip().splitlines()[-3:]})
        rates = [r["images_per_s"] for r in results if "images_per_s" in r]
        out[f"trials_{k}"] = {
            "aggregate_images_per_s": sum(rates),
            "per_trial": rates,
            "wall_s": time.perf_counter() - t0,
            "errors": [r["error"] for r in results if "error" in r],
        }
    base = out[f"trials_{levels[0]}"]["aggregate_images_per_s"] or 1.0
    for k in levels:
        out[f"trials_{k}"]["speedup_vs_1"] = out[f"trials_{k}"]["aggregate_images_per_s"] / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "worker", "compile"])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CPU smoke test")
    parser.add_argument("--out", default=None, help="folder for gpu.json")
    parser.add_argument("--sections", default="single,overhead,concurrent,compile")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", default="128,512", help="single: the batch sizes to compare")
    parser.add_argument("--spe", type=int, default=16)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--variant", default="keras_loop", choices=list(VARIANTS), help="for concurrent trials")
    args = parser.parse_args()
    if args.mode == "worker":
        worker(args)
        return
    if args.mode == "compile":
        print("RESULT " + json.dumps(compile_sequence(args.n)))
        return
    n = 1024 if args.quick else args.n
    levels = [1, 2] if args.quick else [int(v) for v in args.levels.split(",")]
    sections = args.sections.split(",")
    result = {"device": device_name(), "n_images": n}
    path = str(Path(args.out) / "gpu.json") if args.out else None
    t0 = time.perf_counter()
    # Each section is written as soon as it is done, so a time-boxed run keeps what it measured.
    if "single" in sections:
        result["single_trial"] = {}
        batches = tuple(int(v) for v in args.batches.split(","))
        single_trial(n, 3, result["single_trial"], lambda: write(result, path, quiet=True), batches)
        key = "full_mnist_epoch_s" if n == 50_000 else f"epoch_s_{n}_images"
        result[key] = {k: v["steady_epoch_s"] for k, v in result["single_trial"].items() if isinstance(v, dict)}
        write(result, path)
    if "overhead" in sections:
        result["step_overhead"] = step_overhead(1024 if args.quick else 8192)
        write(result, path)
    if "concurrent" in sections:
        result["concurrent"] = concurrent(n, 4 if not args.quick else 3, levels, args.variant)
        write(result, path)
    if "compile" in sections:
        result["compile"] = compile_cost(n)
    result["benchmark_wall_s"] = time.perf_counter() - t0
    write(result, path)


if __name__ == "__main__":
    main()
