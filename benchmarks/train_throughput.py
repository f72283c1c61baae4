"""Training throughput of tuner against a plain Keras reference, measured in the same run.

    python benchmarks/train_throughput.py            # TensorFlow (default backend) + a JAX epoch

Prints images/s of both on the same data and batch size and their ratio (goal ≥ 1.0: the
abstractions — β schedule, metrics, divergence guard, curve recording — cost nothing), plus
the wall time of one full MNIST epoch (50,000 images) on each backend.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from common import mnist, time_reference, time_tuner, write


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternate tuner/reference this many times")
    parser.add_argument("--full-epoch", action="store_true", help="only time one full MNIST epoch on this backend")
    parser.add_argument(
        "--skip-full-epoch", action="store_true", help="leave out the full-epoch timings (minutes on a CPU)"
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import keras

    backend = keras.backend.backend()
    if args.full_epoch:
        train, val = mnist(50_000, 10_000)
        write({"backend": backend, "full_epoch": time_tuner(train, val, args.batch, 2)}, args.out)
        return
    train, val = mnist(args.n_train)
    runs = {"tuner": [], "reference": []}
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        runs["tuner"].append(time_tuner(train, val, args.batch, args.epochs))
        runs["reference"].append(time_reference(train, val, args.batch, args.epochs))
    best = {k: max(r["images_per_s"] for r in v) for k, v in runs.items()}
    result = {
        "backend": backend,
        "batch_size": args.batch,
        "n_train": args.n_train,
        "tuner_images_per_s": best["tuner"],
        "reference_images_per_s": best["reference"],
        "ratio_tuner_over_reference": best["tuner"] / best["reference"],
        "runs": runs,
        "full_mnist_epoch_s": {},
    }
    for other in () if args.skip_full_epoch else ("tensorflow", "jax"):
        env = {**os.environ, "KERAS_BACKEND": other}
        proc = subprocess.run(
            [sys.executable, __file__, "--full-epoch", "--batch", str(args.batch)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            import json

            data = json.loads(proc.stdout[proc.stdout.index("{") :])
            result["full_mnist_epoch_s"][other] = data["full_epoch"]["steady_epoch_s"]
        else:
            result["full_mnist_epoch_s"][other] = f"failed: {proc.stderr.strip().splitlines()[-1:]}"
    write(result, args.out)


if __name__ == "__main__":
    main()
