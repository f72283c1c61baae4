"""How long test scoring takes on this machine, and how good its up-front estimate is.

Trains the quick start's default configuration (latent 16, conv [32, 64], 5,000 MNIST
images, 8 epochs), then runs `tuner evaluate` on all 10,000 test images with the CPU's
default k (500) and, for the same number of image-samples, on 1,000 images with the papers'
k = 5000. Reports each scoring's wall time, the duration the command predicted after its
second batch, their ratio (1.0 = a perfect estimate), and what k = 5000 on all 10,000 images
costs by extrapolation (image-samples scale linearly).

    python benchmarks/scoring_time.py            # ~6 minutes on a 2-core CPU
    python benchmarks/scoring_time.py --quick    # a smoke run (200 images), figures meaningless
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
if "TUNER_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["TUNER_DATA_DIR"] = str(SHARED)

CONFIG = """
data: {dataset: mnist, n_train: 5000, n_val: 1000}
model: {filters: [32, 64]}
training: {epochs: 8, batch_size: 128, seed: 0}
"""
EXPECTED = re.compile(r"expected to take about (?:(\d+):(\d\d)|(\d+) s)")


def tuner(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tuner", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"tuner {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout + proc.stderr


def expected_seconds(output: str) -> float | None:
    match = EXPECTED.search(output)
    if match is None:
        return None
    minutes, seconds, plain = match.groups()
    return float(plain) if plain else 60.0 * float(minutes) + float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scoring_time_cpu.json"))
    args = parser.parse_args()
    n_all = 200 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG)
        run = Path(tmp) / "run"
        train_s, _ = tuner("train", str(config), "--out", str(run), *(["--epochs", "1"] if args.quick else []))
        rows = {}
        for name, k, n in (("cpu_default", 500, n_all), ("paper_k", 5000, n_all // 10)):
            seconds, output = tuner("evaluate", str(run), "--split", "test", "--k", str(k), "--n", str(n))
            predicted = expected_seconds(output)
            rows[name] = {
                "k": k,
                "images": n,
                "image_samples": k * n,
                "seconds": seconds,
                "predicted_s": predicted,
                "seconds_over_predicted": seconds / predicted if predicted else None,
            }
            print(f"k = {k} on {n} images: {seconds:.0f} s (predicted {predicted} s)", flush=True)
    result = {
        "machine": f"{os.cpu_count()} cores",
        "train_seconds": train_s,
        "quick": args.quick,
        "scorings": rows,
        # The papers' k on the whole test set, from the same number of image-samples per second.
        "paper_k_all_images_s_extrapolated": rows["paper_k"]["seconds"] * 10,
        "same_image_samples_ratio": rows["paper_k"]["seconds"] / rows["cpu_default"]["seconds"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
