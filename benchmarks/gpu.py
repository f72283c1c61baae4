"""GPU benchmark (JAX backend): one trial's throughput, a full MNIST epoch, several trials
sharing one GPU, and compilation cost, against a plain Keras/JAX reference in the same run.

    KERAS_BACKEND=jax python benchmarks/gpu.py --out results/   # on the GPU machine
    KERAS_BACKEND=jax python benchmarks/gpu.py --quick           # a small smoke run on a CPU

Writes gpu.json (and prints it). See ../shared/gpu/README.md for running it on the offline
GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import mnist, time_reference, time_tuner, write


def device_name() -> str:
    import jax

    devices = jax.devices()
    return f"{devices[0].platform}: {getattr(devices[0], 'device_kind', '?')} x{len(devices)}"


def single_trial(n: int, epochs: int) -> dict:
    train, val = mnist(n, 10_000 if n >= 50_000 else 1000)
    rows = {}
    for batch, spe in ((128, 1), (128, 16), (512, 16)):
        rows[f"tuner_b{batch}_spe{spe}"] = time_tuner(train, val, batch, epochs, steps_per_execution=spe)
        rows[f"reference_b{batch}_spe{spe}"] = time_reference(train, val, batch, epochs, steps_per_execution=spe)
    rows["tuner_b512_spe16_bf16"] = time_tuner(train, val, 512, epochs, steps_per_execution=16, mixed_precision=True)
    for batch in (128, 512):
        rows[f"ratio_b{batch}_spe16"] = rows[f"tuner_b{batch}_spe16"]["images_per_s"] / rows[f"reference_b{batch}_spe16"]["images_per_s"]
    return rows


def compile_cost(n: int) -> dict:
    """A new latent size is a new program: time the first epoch against a steady one."""
    train, val = mnist(n, 1000)
    from tuner.config import TrainConfig
    from tuner.data import Splits
    from tuner.training import train as train_config

    out = {}
    for latent in (8, 32, 64):
        config = TrainConfig.model_validate({"model": {"latent_dim": latent}, "training": {"epochs": 3, "batch_size": 512, "steps_per_execution": 16}})
        t0 = time.perf_counter()
        history = train_config(config, Splits(train, val, val)).history
        total = time.perf_counter() - t0
        steady = min(h["epoch_time"] for h in history[1:])
        out[f"latent_{latent}"] = {"compile_s": history[0]["epoch_time"] - steady, "trial_s": total, "steady_epoch_s": steady}
    return out


def worker(args: argparse.Namespace) -> None:
    train, val = mnist(args.n, 1000)
    result = time_tuner(train, val, args.batch, args.epochs, steps_per_execution=args.spe)
    print("RESULT " + json.dumps(result))


def concurrent(n: int, epochs: int, levels: list[int]) -> dict:
    """Aggregate images/s of K trials on one GPU, each a process with 1/K of the memory."""
    out = {}
    for k in levels:
        env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / k:.3f}"}
        cmd = [sys.executable, __file__, "worker", "--n", str(n), "--epochs", str(epochs), "--batch", "512", "--spe", "16"]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(k)]
        results = []
        for p in procs:
            stdout, stderr = p.communicate()
            line = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
            if line:
                results.append(json.loads(line[-1][7:]))
            else:
                results.append({"error": stderr.strip().splitlines()[-3:]})
        rates = [r["images_per_s"] for r in results if "images_per_s" in r]
        out[f"trials_{k}"] = {"aggregate_images_per_s": sum(rates), "per_trial": rates, "wall_s": time.perf_counter() - t0,
                              "errors": [r["error"] for r in results if "error" in r]}
    base = out[f"trials_{levels[0]}"]["aggregate_images_per_s"] or 1.0
    for k in levels:
        out[f"trials_{k}"]["speedup_vs_1"] = out[f"trials_{k}"]["aggregate_images_per_s"] / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "worker"])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CPU smoke test")
    parser.add_argument("--out", default=None, help="folder for gpu.json")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--spe", type=int, default=16)
    parser.add_argument("--levels", default="1,2,4,8")
    args = parser.parse_args()
    if args.mode == "worker":
        worker(args)
        return
    n = 2000 if args.quick else 50_000
    levels = [1, 2] if args.quick else [int(v) for v in args.levels.split(",")]
    result = {"device": device_name(), "n_images": n}
    path = str(Path(args.out) / "gpu.json") if args.out else None
    t0 = time.perf_counter()
    # Each section is written as soon as it is done, so a time-boxed run keeps what it measured.
    result["single_trial"] = single_trial(n, 3)
    result["full_mnist_epoch_s"] = {k: v["steady_epoch_s"] for k, v in result["single_trial"].items() if isinstance(v, dict)}
    write(result, path)
    result["concurrent"] = concurrent(n, 4 if not args.quick else 3, levels)
    write(result, path)
    result["compile"] = compile_cost(n)
    result["benchmark_wall_s"] = time.perf_counter() - t0
    write(result, path)


if __name__ == "__main__":
    main()
