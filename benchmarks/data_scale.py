"""A large image folder: the first decode into the cache, and the memory of trials reading it.

Generates a folder of ``--n`` RGB JPEG images of ``--size`` px (crops of scikit-image's sample
photos, as in ``photos_quality.py``), then measures, each in fresh processes so that peak
resident memory is the process's own:

* the first load (decoding the folder in parallel into the uint8 cache) and a second load
  (memory-mapping the cached file): seconds and images per second;
* the peak RSS of one training process (one epoch over ``--n-train`` images, ``tuner.api.train``)
  on the full folder against the same trial on a 1,000-image folder, and of ``--workers``
  such processes running together (their sum, and the largest one);
* training images per second from uint8 rows (the cache path) against the float32 arrays that
  every worker used to hold, on MNIST, in the same process (``TrainBatches`` alone and a
  one-epoch trial).

Goals: ≤ 1.5 GB per worker above the same trial on 1,000 images; uint8 rows ≥ 0.9× the
float32 path's images per second.

    python benchmarks/data_scale.py                     # 100,000 images at 64 px (~15 minutes)
    python benchmarks/data_scale.py --n 5000 --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, write
from photos_quality import make_crops

TRIAL = """
import json, resource, sys, time
from tuner.config import TrainConfig
from tuner.api import train
config = TrainConfig.model_validate({{
    "data": {{"dataset": "folder", "path": {folder!r}, "size": [{size}, {size}], "n_train": {n_train}, "n_val": 100}},
    "model": {{"filters": "auto", "latent_dim": 16}},
    "training": {{"epochs": 1, "batch_size": 256}},
}})
start = time.perf_counter()
train(config)
# RSS counts the pages of the memory-mapped cache that a process touched, though all processes
# share them; PSS splits shared pages between their users, and private pages are its own.
memory = {{}}
for line in open("/proc/self/smaps_rollup"):
    key, _, rest = line.partition(":")
    if key in ("Pss", "Private_Clean", "Private_Dirty", "Shared_Clean"):
        memory[key] = int(rest.split()[0]) / 1024
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "pss_mb": memory.get("Pss"),
                  "private_mb": memory.get("Private_Clean", 0) + memory.get("Private_Dirty", 0),
                  "shared_clean_mb": memory.get("Shared_Clean")}}))
"""

LOAD = """
import json, resource, time
from tuner.vae.data.folder import ImageFolder
start = time.perf_counter()
images = ImageFolder({folder!r}, size=[{size}, {size}]).load().train
print(json.dumps({{"seconds": time.perf_counter() - start, "n": len(images),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_python(code: str, env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def trials_together(code: str, env: dict[str, str], workers: int) -> list[dict]:
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    results = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"a trial process failed with code {proc.returncode}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    return results


def batch_throughput(n_train: int) -> dict:
    """Images per second of TrainBatches and of a one-epoch trial, uint8 rows vs float32."""
    from tuner.config import DataConfig, TrainConfig
    from tuner.vae.batches import TrainBatches
    from tuner.vae.data import Splits, as_unit_float, load_splits
    from tuner.vae.training import train

    rows = load_splits(DataConfig(n_train=n_train, n_val=1000))
    floats = Splits(as_unit_float(rows.train), rows.val, rows.test)
    result: dict[str, dict[str, float]] = {}
    for name, splits in (("uint8_rows", rows), ("float32", floats)):
        batches = TrainBatches(splits.train, 128, seed=0)
        start = time.perf_counter()
        for _ in range(3):
            for i in range(len(batches)):
                batches[i]
            batches.on_epoch_end()
        produced = 3 * len(batches) * 128 / (time.perf_counter() - start)
        config = TrainConfig.model_validate({"training": {"epochs": 2, "batch_size": 128}})
        history = train(config, splits).history
        result[name] = {
            "batches_images_per_s": produced,
            "trial_images_per_s": (len(splits.train) // 128) * 128 / history[-1]["epoch_time"],
        }
    result["ratio_batches"] = result["uint8_rows"]["batches_images_per_s"] / result["float32"]["batches_images_per_s"]
    result["ratio_trial"] = result["uint8_rows"]["trial_images_per_s"] / result["float32"]["trial_images_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--n-train", type=int, default=2000, help="images a trial trains on per epoch")
    parser.add_argument("--quick", action="store_true", help="skip the concurrent workers and use fewer images")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result: dict = {"n_images": args.n, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        start = time.perf_counter()
        make_crops(big, args.n, args.size)
        make_crops(small, 1000, args.size, seed=1)
        result["generate_seconds"] = time.perf_counter() - start
        env = {**os.environ, "TUNER_CACHE_DIR": str(Path(tmp) / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        first = run_python(LOAD.format(folder=str(big), size=args.size), env)
        again = run_python(LOAD.format(folder=str(big), size=args.size), env)
        result["first_load"] = {**first, "images_per_s": args.n / first["seconds"]}
        result["cached_load"] = {**again, "images_per_s": args.n / again["seconds"]}
        print(f"first load {first['seconds']:.1f} s, cached {again['seconds']:.1f} s", flush=True)
        run_python(LOAD.format(folder=str(small), size=args.size), env)
        one_small = run_python(TRIAL.format(folder=str(small), size=args.size, n_train=600), env)
        one_big = run_python(TRIAL.format(folder=str(big), size=args.size, n_train=args.n_train), env)
        result["trial_1000_images"] = one_small
        result["trial_all_images"] = one_big
        result["rss_above_small_trial_mb"] = one_big["peak_rss_mb"] - one_small["peak_rss_mb"]
        result["private_above_small_trial_mb"] = one_big["private_mb"] - one_small["private_mb"]
        print(
            f"one trial: {one_small['peak_rss_mb']:.0f} MB (1,000 images), {one_big['peak_rss_mb']:.0f} MB", flush=True
        )
        if not args.quick:
            together = trials_together(
                TRIAL.format(folder=str(big), size=args.size, n_train=args.n_train), env, args.workers
            )
            peaks = [r["peak_rss_mb"] for r in together]
            result["workers_together"] = {
                "workers": args.workers,
                "peak_rss_mb": peaks,
                "largest_above_small_trial_mb": max(peaks) - one_small["peak_rss_mb"],
                "private_mb": [r["private_mb"] for r in together],
                "pss_mb": [r["pss_mb"] for r in together],
                "largest_private_above_small_trial_mb": max(r["private_mb"] for r in together)
                - one_small["private_mb"],
            }
    result["throughput_mnist"] = batch_throughput(10_000 if not args.quick else 2_000)
    result["peak_rss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    default = "data_scale_quick.json" if args.quick else "data_scale.json"
    write(result, args.out or str(REPO / "benchmarks" / "results" / default))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
