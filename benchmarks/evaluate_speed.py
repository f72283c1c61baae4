"""Speed of the IWAE NLL (`tuner evaluate --k`): the draws made by parallel threads while the
model scores the previous batch, and the last batch padded so that one program serves every
call, against the module of ``BEFORE`` (draws made on one core between model calls, a ragged
last batch), on the same model, images and draws.

It also times the draws alone, serial and threaded: the host's part of the work, which a GPU
does not take over. On a GPU host (k = 5000 on 10,000 test images, 64 latent
units: 3.2e9 draws) that part was ~37 s on one core of this project's CPU, while the model's
part is seconds there; on this 2-core CPU the model's part dominates.

    python benchmarks/evaluate_speed.py            # ~3 minutes on 2 CPU cores
    python benchmarks/evaluate_speed.py --quick    # ~1 minute
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, write

BEFORE = "3491046"  # the last commit whose tuner/vae/evaluation.py drew serially, unpadded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n", type=int, default=250, help="validation images scored")
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each variant")
    parser.add_argument("--quick", action="store_true", help="k = 200 on 100 images, one run each")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "evaluate_speed_cpu.json"))
    args = parser.parse_args()
    if args.quick:
        args.k, args.n, args.repeats = 200, 100, 1

    from tuner.vae.backend import load_keras

    keras = load_keras()
    from tuner.config import DataConfig, TrainConfig
    from tuner.vae import evaluation
    from tuner.vae.data import load_splits
    from tuner.vae.training import train

    with tempfile.TemporaryDirectory() as tmp:
        old = subprocess.run(
            ["git", "show", f"{BEFORE}:tuner/vae/evaluation.py"], cwd=REPO, check=True, capture_output=True, text=True
        )
        (Path(tmp) / "old_evaluation.py").write_text(old.stdout)
        sys.path.insert(0, tmp)
        import old_evaluation  # type: ignore[import-not-found]

    data = DataConfig(dataset="mnist", dynamic_binarization=True, n_train=1024, n_val=max(args.n, 256))
    splits = load_splits(data)
    config = TrainConfig.model_validate(
        {
            "data": data.model_dump(),
            "model": {"latent_dim": args.latent_dim, "filters": [32, 64]},
            "training": {"epochs": 1},
        }
    )
    model = train(config, splits).model
    images = splits.val[: args.n]
    # 1 GB (the default bound) makes the last of the batches shorter at these sizes, as at
    # k = 5000 on the 10,000 test images.
    rows = evaluation.rows_for_memory(model, evaluation.DEFAULT_MAX_MEMORY_GB)
    batch = max(1, min(len(images), rows // min(500, args.k)))

    def run(module: object) -> tuple[float, float]:
        start = time.perf_counter()
        nll = module.iwae_nll(model, images, k=args.k)  # type: ignore[attr-defined]
        return time.perf_counter() - start, float(nll.mean())

    run(evaluation)  # compile both programs once, outside the timings
    run(old_evaluation)
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    nll: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, module in (("before", old_evaluation), ("after", evaluation)):
            s, value = run(module)
            seconds[name].append(s)
            nll[name] = value

    # The draws alone, for the same jobs: on one core (before) and by 1, 2, 4 … threads up to
    # this machine's cores (iwae_nll uses all but one).
    from concurrent.futures import ThreadPoolExecutor

    chunks = [min(500, args.k - done) for done in range(0, args.k, 500)]
    jobs = [
        (c, first, min(batch, len(images) - first))
        for c in range(len(chunks))
        for first in range(0, len(images), batch)
    ]
    start = time.perf_counter()
    for c, first, count in jobs:
        evaluation._normal_draws(0, c, first, count, chunks[c], args.latent_dim)
    serial = time.perf_counter() - start
    threaded: dict[int, float] = {}
    cores = os.cpu_count() or 1
    for threads in sorted({min(2**i, cores) for i in range(cores.bit_length() + 1)}):
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            for c, first, count in jobs:
                evaluation._normal_draws(0, c, first, count, chunks[c], args.latent_dim, pool)
            threaded[threads] = time.perf_counter() - start
    draws = len(images) * args.k * args.latent_dim
    best = {name: min(values) for name, values in seconds.items()}
    write(
        {
            "backend": keras.backend.backend(),
            "cpu_count": os.cpu_count(),
            "draw_threads": evaluation._draw_threads(),
            "k": args.k,
            "n_images": len(images),
            "latent_dim": args.latent_dim,
            "images_per_call": batch,
            "seconds": seconds,
            "ratio_after_to_before": best["after"] / best["before"],
            "nll": nll,
            "nll_difference": nll["after"] - nll["before"],
            "draws_seconds": {"serial": serial, "threads": threaded},
            "draws_ratio_to_serial": {threads: s / serial for threads, s in threaded.items()},
            "draws_per_second": {"serial": draws / serial, "threads": {t: draws / s for t, s in threaded.items()}},
            # The host's part of `tuner evaluate --k 5000` on the 10,000 MNIST test images.
            "draws_seconds_at_k5000_10000_images": {
                "serial": 10_000 * 5000 * args.latent_dim * serial / draws,
                "threads": {t: 10_000 * 5000 * args.latent_dim * s / draws for t, s in threaded.items()},
            },
            "before_commit": BEFORE,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
