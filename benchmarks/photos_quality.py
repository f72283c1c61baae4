"""Photo crops: does the default model learn them, and is its reconstruction sharp?

A folder of RGB photo crops is generated from the sample photos that scikit-image ships
(random crops at random scales, resized to ``--size``, saved as JPEG at quality 95), then the
configs are trained for the same CPU seconds with only ``epochs`` planned by a timing run, as
a plain ``tuner train`` would:

* ``old_default``: the defaults before ``filters: auto``, the coupled RGB likelihood and
  ``batch_size: auto`` (conv [32, 64], the discretized logistic with independent channels,
  batch 128);
* ``new_default``: today's defaults (``filters: auto``: 3 stages at 64 px, 4 at 128;
  ``likelihood: auto``: ``discretized_logistic_rgb`` for 8-bit RGB; ``batch_size: auto``:
  16 on the 695 training crops of 1,000);
* ``pixel_head``: the defaults with ``likelihood: pixelcnn_logistic_rgb`` (each pixel also
  read from the pixels before it, :mod:`tuner.vae.pixel_head`); its reconstructions are
  decoded pixel by pixel.

Everything else is at its default (latent 16, constant β = 1, Adam 1e-3). Scored on the
validation crops: bits per dimension from the val ELBO (an upper bound on the NLL), beside the
uniform model's 8.0 and the same images stored losslessly as PNG; PSNR, SSIM and the
sharpness ratio of the reconstructions (:mod:`tuner.vae.image_metrics`).

Goals: the new default's bits/dim ≤ the PNG bits/dim of the same images, and a sharper
reconstruction (PSNR + 2 dB) than the old default's.

    python benchmarks/photos_quality.py                       # ~1,000 crops at 64 px, 3 × 180 s
    python benchmarks/photos_quality.py --epochs 60 --configs benchmarks/photos_factors.yaml --out benchmarks/results/photos_factors_64_epochs.json
    python benchmarks/photos_quality.py --quick               # a smoke run, figures meaningless
    python benchmarks/photos_quality.py --size 128 --budget 600 --out benchmarks/results/photos_quality_128.json

On a machine without scikit-image (the offline GPU machine), ``--save-sources photos.npz``
here and ``--sources photos.npz`` there crop the same sample photos; ``--configs grid.yaml``
replaces the configs with your own (name -> {model: ..., training: ...} overrides), e.g.
a sweep of latent sizes. The JSON is rewritten after every config, so a run cut short keeps
what it finished.
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
CONFIGS: dict[str, dict[str, Any]] = {
    # Before filters: auto and the coupled RGB likelihood.
    "old_default": {
        "model": {"filters": [32, 64], "likelihood": "discretized_logistic"},
        "training": {"batch_size": 128},
    },
    "new_default": {},
    # The defaults with the autoregressive pixel head: the lowest bits/dim, a latent that carries little.
    "pixel_head": {"model": {"likelihood": "pixelcnn_logistic_rgb"}},
}


def sample_photos(sources: str | None = None) -> list[np.ndarray]:
    """scikit-image's sample photos as RGB uint8 arrays (or those saved by ``--save-sources``)."""
    if sources:
        with np.load(sources) as saved:
            return [saved[name] for name in saved.files]
    from skimage import data

    photos = [getattr(data, name)() for name in SAMPLES if hasattr(data, name)]
    return [(p if p.ndim == 3 else np.stack([p] * 3, axis=-1))[..., :3] for p in photos]


def make_crops(folder: Path, n: int, size: int, seed: int = 0, sources: str | None = None) -> None:
    """``n`` JPEG crops of ``size``×``size`` from the sample photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = sample_photos(sources)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo = photos[i % len(photos)][..., :3]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]).astype(np.uint8))
        crop.resize((size, size), Image.Resampling.BILINEAR).save(folder / f"crop{i:05d}.jpg", quality=95)


def _ssim(images: np.ndarray, recon: np.ndarray) -> float | None:
    try:
        return float(np.mean(image_metrics.ssim(images, recon)))
    except ImportError:  # scikit-image absent (the offline GPU machine): PSNR and sharpness only
        return None


def run_one(name: str, overrides: dict[str, Any], folder: Path, size: int, budget: float, epochs: int | None) -> dict:
    """Train one config for ``epochs`` (or, without it, as many as ``budget`` seconds allow) and score it."""
    content = {
        "data": {"dataset": "folder", "path": str(folder), "size": [size, size]},
        "model": overrides.get("model", {}),
        "training": {**overrides.get("training", {}), "epochs": 1},
    }
    config = TrainConfig.model_validate(content)
    splits = load_splits(config.data)
    if epochs is None:
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
        "ssim": _ssim(val[:256], recon),
        "sharpness_ratio": float(np.median(image_metrics.sharpness_ratio(val[:256], recon))),
        "batch_size": result.config.training.batch_size,
        "val_kl": result.history[-1]["val_kl"],
        "likelihood": result.config.model.likelihood,
        "latent_dim": result.config.model.latent_dim,
        "overrides": overrides,
    }
    print(f"{name}: {bits:.3f} bits/dim, PSNR {row['psnr_db']:.2f} dB, {epochs} epochs", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="crops to generate")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per config")
    parser.add_argument(
        "--epochs", type=int, default=None, help="train every config this many epochs (equal epochs, not equal time)"
    )
    parser.add_argument("--configs", default=None, help="YAML: name -> {model: ..., training: ...}")
    parser.add_argument("--sources", default=None, help=".npz of source photos (instead of scikit-image's)")
    parser.add_argument("--save-sources", default=None, help="save scikit-image's sample photos here and stop")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.save_sources:
        np.savez_compressed(args.save_sources, **{f"photo{i}": p for i, p in enumerate(sample_photos())})
        return
    configs = CONFIGS
    if args.configs:
        import yaml

        configs = yaml.safe_load(Path(args.configs).read_text())
    n = 120 if args.quick else args.n
    epochs = 2 if args.quick else args.epochs  # None: as many as the budget allows
    default = "photos_quality_quick.json" if args.quick else f"photos_quality_{args.size}.json"
    out = args.out or str(REPO / "benchmarks" / "results" / default)
    result: dict[str, Any] = {
        "n_images": n,
        "size": args.size,
        "budget_seconds_per_config": None if epochs else args.budget,
        "epochs_per_config": epochs,
        "backend": keras.backend.backend(),
        "quick": args.quick,
        "configs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "crops"
        make_crops(folder, n, args.size, sources=args.sources)
        splits = load_splits(TrainConfig.model_validate({"data": {"dataset": "folder", "path": str(folder)}}).data)
        val_uint8 = np.round(as_unit_float(splits.val) * 255).astype(np.uint8)
        png = image_metrics.png_bits_per_dim(val_uint8)
        result.update(png_bits_per_dim=png, uniform_bits_per_dim=image_metrics.uniform_bits_per_dim())
        print(f"PNG: {png:.3f} bits/dim on {len(val_uint8)} validation crops", flush=True)
        for name, overrides in configs.items():
            result["configs"][name] = run_one(name, overrides, folder, args.size, args.budget, epochs)
            write(result, out, quiet=True)
    rows = result["configs"]
    if "new_default" in rows and "old_default" in rows:
        new, old = rows["new_default"], rows["old_default"]
        result["new_default_beats_png"] = new["bits_per_dim_elbo"] <= png
        result["psnr_gain_db"] = new["psnr_db"] - old["psnr_db"]
    if "pixel_head" in rows:
        result["pixel_head_beats_png"] = rows["pixel_head"]["bits_per_dim_elbo"] <= png
    write(result, out)


if __name__ == "__main__":
    main()
