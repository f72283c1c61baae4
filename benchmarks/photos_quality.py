"""Photo crops: does the default model learn them, and is its reconstruction sharp?

A folder of RGB photo crops is generated from the sample photos that scikit-image ships
(random crops at random scales, resized to ``--size``, saved as JPEG at quality 95), then two
configs are trained for the same CPU seconds with only ``epochs`` planned by a timing run, as
a plain ``tuner train`` would:

* ``old_default``: the architecture before ``filters: auto`` (conv [32, 64]);
* ``new_default``: ``filters: auto`` (3 stages at 64 px, 4 at 128).

Both use everything else at its default (latent 16, constant β = 1, Adam 1e-3, the
discretized logistic that ``likelihood: auto`` picks for 8-bit images). Scored on the
validation crops: bits per dimension from the val ELBO (an upper bound on the NLL), beside the
uniform model's 8.0 and the same images stored losslessly as PNG; PSNR, SSIM and the
sharpness ratio of the reconstructions (:mod:`tuner.vae.image_metrics`).

Goals: the new default's bits/dim ≤ the PNG bits/dim of the same images, and a sharper
reconstruction (PSNR + 2 dB) than the old default's.

    python benchmarks/photos_quality.py                       # ~1,000 crops at 64 px, 2 × 180 s
    python benchmarks/photos_quality.py --quick               # a smoke run, figures meaningless
    python benchmarks/photos_quality.py --size 128 --budget 600 --out results/photos_quality_128.json
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, keras, write

from tuner.config import TrainConfig
from tuner.vae import image_metrics
from tuner.vae.data import as_unit_float, load_splits
from tuner.vae.training import train

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "retina", "cat")
CONFIGS: dict[str, dict[str, Any]] = {"old_default": {"filters": [32, 64]}, "new_default": {"filters": "auto"}}


def make_crops(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` JPEG crops of ``size``×``size`` from scikit-image's sample photos."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)() for name in SAMPLES if hasattr(data, name)]
    photos = [p if p.ndim == 3 else np.stack([p] * 3, axis=-1) for p in photos]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo = photos[i % len(photos)][..., :3]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]).astype(np.uint8))
        crop.resize((size, size), Image.Resampling.BILINEAR).save(folder / f"crop{i:05d}.jpg", quality=95)


def run_one(name: str, model: dict[str, Any], folder: Path, size: int, budget: float) -> dict:
    content = {
        "data": {"dataset": "folder", "path": str(folder), "size": [size, size]},
        "model": model,
        "training": {"epochs": 1},
    }
    config = TrainConfig.model_validate(content)
    splits = load_splits(config.data)
    start = time.perf_counter()
    probe = train(config, splits, epochs=2)
    per_epoch = max(h["epoch_time"] for h in probe.history[1:])
    setup = time.perf_counter() - start - sum(h["epoch_time"] for h in probe.history)
    epochs = max(1, int((budget - setup) / per_epoch))
    start = time.perf_counter()
    result = train(config, splits, epochs=epochs)
    seconds = time.perf_counter() - start
    val = splits.val
    dims = math.prod(val.shape[1:])
    bits = -result.val_elbo / (dims * math.log(2))
    recon = keras.ops.convert_to_numpy(result.model.reconstruct(val[:256]))
    row = {
        "filters": result.model.filters,
        "epochs": epochs,
        "train_seconds": seconds,
        "val_elbo": result.val_elbo,
        "bits_per_dim_elbo": bits,
        "psnr_db": float(np.mean(image_metrics.psnr(val[:256], recon))),
        "ssim": float(np.mean(image_metrics.ssim(val[:256], recon))) if size >= 7 else None,
        "sharpness_ratio": float(np.median(image_metrics.sharpness_ratio(val[:256], recon))),
        "val_kl": result.history[-1]["val_kl"],
        "likelihood": result.config.model.likelihood,
    }
    print(f"{name}: {bits:.3f} bits/dim, PSNR {row['psnr_db']:.2f} dB, {epochs} epochs", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="crops to generate")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per config")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n, budget = (120, 10.0) if args.quick else (args.n, args.budget)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crops"
        make_crops(folder, n, args.size)
        splits = load_splits(TrainConfig.model_validate({"data": {"dataset": "folder", "path": str(folder)}}).data)
        val_uint8 = np.round(as_unit_float(splits.val) * 255).astype(np.uint8)
        png = image_metrics.png_bits_per_dim(val_uint8)
        rows = {name: run_one(name, model, folder, args.size, budget) for name, model in CONFIGS.items()}
    new, old = rows["new_default"], rows["old_default"]
    result = {
        "png_bits_per_dim": png,
        "uniform_bits_per_dim": image_metrics.uniform_bits_per_dim(),
        "new_default_beats_png": new["bits_per_dim_elbo"] <= png,
        "psnr_gain_db": new["psnr_db"] - old["psnr_db"],
        "n_images": n,
        "size": args.size,
        "budget_seconds_per_config": budget,
        "backend": keras.backend.backend(),
        "quick": args.quick,
        "configs": rows,
    }
    default = "photos_quality_quick.json" if args.quick else f"photos_quality_{args.size}.json"
    write(result, args.out or str(REPO / "benchmarks" / "results" / default))


if __name__ == "__main__":
    main()
