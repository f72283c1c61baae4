"""``tuner train``, ``evaluate`` and ``refit``: commands that train or score one model."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from tuner.vae.evaluation import Evaluation

from tuner.cli._app import MAX_K, StorageOpt, _writable, command
from tuner.errors import OptionError
from tuner.ui.console import epoch_line, fmt, out


@command
def train(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="training config (YAML or JSON), e.g. from `tuner export`")
    ],
    epochs: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="override training.epochs")] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="directory for config, weights and metrics")
    ] = Path("runs/latest"),
) -> None:
    """Train one configuration and save config, weights and per-epoch metrics."""
    from tuner import api
    from tuner.config import load_train_config

    cfg = load_train_config(config)
    _writable("--out", out_dir, "folder")
    total = epochs or cfg.training.epochs
    out.print(f"training {total} epochs; the run folder will be {out_dir.absolute()}", markup=False)
    result = api.train(cfg, epochs=epochs, out=out_dir, hooks=[lambda e, m: out.print(epoch_line(e, total, m))])
    out.print(
        f"val ELBO {fmt(result.val_elbo)} nats per image under {result.config.model.likelihood}; saved to {out_dir}",
        markup=False,
    )


MaxMemoryOpt = Annotated[
    float,
    typer.Option("--max-memory", metavar="GB", help="memory bound of the IWAE estimate's working set (same result)"),
]


def check_max_memory(max_memory: float) -> None:
    if not max_memory > 0 or max_memory > 1e6:
        raise OptionError(f"--max-memory: must be a number of GB > 0, got {max_memory}")


K_DEFAULT = "5000 on a GPU or TPU, 500 on a CPU"
SHORTER = "fewer images (--n) or samples (--k) shorten it in proportion"


def pick_k(k: int | None) -> int:
    """``--k`` as given, or the device's default, said in one line when it is below the papers'."""
    if k is not None:
        return k
    from tuner.vae.evaluation import PAPER_K, default_k

    k = default_k()
    if k < PAPER_K:
        out.print(
            f"k = {k} importance samples (the CPU default); --k {PAPER_K} gives the papers' bound, "
            f"about {PAPER_K // k}× as long",
            markup=False,
        )
    return k


@command
def evaluate(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN", help="a folder written by `tuner train`, or best.yaml from `tuner export --weights`"
        ),
    ],
    split: Annotated[str, typer.Option(metavar="test|val", help="which split to score")] = "test",
    k: Annotated[
        Optional[int],
        typer.Option(
            "--k",
            min=0,
            max=MAX_K,
            metavar="K",
            help="importance samples for the IWAE NLL (0: skip); default " + K_DEFAULT,
        ),
    ] = None,
    n: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="evaluate only the first N images")] = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", metavar="FILE", help="also write the results here")
    ] = None,
    max_memory: MaxMemoryOpt = 1.0,
) -> None:
    """ELBO, importance-weighted NLL, active units and a diagnosis of the usual failures."""
    if split not in ("test", "val"):
        raise OptionError(f"--split: must be test or val, got {split!r}")
    check_max_memory(max_memory)
    if json_out is not None:
        _writable("--json", json_out)
    from tuner.ui.progress import TaskProgress
    from tuner.vae.backend import load_keras

    load_keras()
    from tuner.vae.evaluation import evaluate as evaluate_model
    from tuner.vae.saving import load_run

    _, model, splits = load_run(run_dir)
    images = getattr(splits, split)[:n]
    k = pick_k(k)
    with TaskProgress(f"IWAE bound, k={k}, {len(images)} images", unit="image-samples", hint=SHORTER) as progress:
        result = evaluate_model(model, images, split=split, k=k, on_progress=progress.update, max_memory=max_memory)
    out.print(f"{split}: {result.n_images} images, likelihood {result.likelihood}", markup=False)
    se = result.elbo_se
    spread = f" ± {fmt(se, 2 if se >= 0.01 else 3)}" if se is not None else ""  # a tiny SE keeps a digit
    out.print(
        f"  ELBO            {fmt(result.elbo)}{spread} nats (mean of {result.elbo_draws} draws; "
        f"recon {fmt(result.recon)}, KL {fmt(result.kl)})",
        markup=False,
    )
    if result.nll_iwae is not None:
        out.print(f"  NLL (IWAE k={k})  {fmt(result.nll_iwae)} nats under {result.likelihood}", markup=False)
    print_quality(result)
    out.print(f"  active units    {result.active_units} / {result.latent_dim}", markup=False)
    out.print("  KL per dim      " + " ".join(fmt(v, 2) for v in result.kl_per_dim) + " nats", markup=False)
    for line in result.diagnosis:
        out.print(f"  {line}", markup=False)
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def print_quality(result: Evaluation) -> None:
    """The bits per dimension beside their baselines, and the reconstructions' quality."""
    if result.bits_per_dim is not None:
        source = "IWAE NLL" if result.nll_iwae is not None else "ELBO"
        png = f", PNG {fmt(result.png_bits_per_dim, 2)}" if result.png_bits_per_dim is not None else ""
        out.print(
            f"  bits per dim    {fmt(result.bits_per_dim, 4)} (from the {source}; uniform 8.00{png})", markup=False
        )
    if result.psnr_db is not None:
        ssim = f", SSIM {fmt(result.ssim, 3)}" if result.ssim is not None else ""
        out.print(
            f"  reconstructions PSNR {fmt(result.psnr_db, 2)} dB{ssim}, sharpness {fmt(result.sharpness, 2)} "
            "(1 = as sharp as the input)",
            markup=False,
        )


@command
def refit(
    study: Annotated[str, typer.Option(metavar="NAME", help="study whose best trial to retrain")],
    epochs: Annotated[
        Optional[int], typer.Option(min=1, metavar="N", help="at most this many epochs (default 1000)")
    ] = None,
    patience: Annotated[
        Optional[int], typer.Option(min=1, metavar="P", help="stop after P epochs without a better val ELBO (50)")
    ] = None,
    trial: Annotated[Optional[int], typer.Option(min=0, metavar="N", help="this trial instead of the best")] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", metavar="DIR", help="where to save (default runs/refit-NAME)")
    ] = None,
    k: Annotated[
        Optional[int],
        typer.Option(
            "--k", min=1, max=MAX_K, metavar="K", help="importance samples for the test NLL; default " + K_DEFAULT
        ),
    ] = None,
    n: Annotated[Optional[int], typer.Option(min=1, metavar="N", help="score only the first N test images")] = None,
    time_budget: Annotated[
        Optional[float],
        typer.Option(
            min=1, metavar="S", help="train as many epochs as fit in S seconds (timed by a 2-epoch probe), at most N"
        ),
    ] = None,
    max_memory: MaxMemoryOpt = 1.0,
    storage: StorageOpt = None,
) -> None:
    """Retrain the best trial to convergence (decaying learning rate, early stopping) and report its test NLL.

    Saved like `tuner train`; the result is kept with the study for `tuner status` and the report."""

    from tuner import api
    from tuner.ui.progress import TaskProgress

    check_max_memory(max_memory)
    out_path = out_dir or Path("runs") / f"refit-{study}"
    _writable("--out", out_path, "folder")
    limit = [epochs or 1000]
    from tuner import storage as storage_lib

    out.print(
        f"refit of study {study!r} at {storage_lib.describe(storage_lib.resolve_url(storage))}; "
        f"the run folder will be {out_path.absolute()}",
        markup=False,
    )

    def on_plan(planned: int, seconds: float) -> None:
        limit[0] = planned
        out.print(f"planned {planned} epochs in {fmt(time_budget, 0)} s ({fmt(seconds, 2)} s per epoch)", markup=False)

    with contextlib.ExitStack() as stack:
        bar: list[TaskProgress] = []

        def on_scoring(k_used: int, n_images: int) -> None:
            # The bar (and its ETA) starts with the evaluation, after training.
            label = f"test NLL (IWAE k={k_used}, {n_images} images)"
            bar.append(stack.enter_context(TaskProgress(label, unit="image-samples", hint=SHORTER)))
            out.print(f"scoring: {label}", markup=False)

        def on_progress(done: int, total: int) -> None:
            bar[0].update(done, total)

        result, test = api.refit(
            study,
            storage_url=storage,
            trial=trial,
            epochs=epochs,
            patience=patience,
            out=out_path,
            k=pick_k(k),
            n=n,
            max_memory=max_memory,
            time_budget=time_budget,
            on_scoring=on_scoring,
            hooks=[lambda e, m: out.print(epoch_line(e, limit[0], m))],
            on_plan=on_plan,
            on_progress=on_progress,
        )
    best = max(range(len(result.history)), key=lambda i: result.history[i]["val_elbo"])
    out.print(
        f"stopped after {len(result.history)} epochs; best val ELBO {fmt(result.val_elbo)} nats at epoch {best + 1}; "
        f"saved to {out_path}",
        markup=False,
    )
    out.print(
        f"test NLL (IWAE k={test.k}, {test.n_images} images) {fmt(test.nll_iwae)} nats per image under "
        f"{test.likelihood}",
        markup=False,
    )
    print_quality(test)
    for line in test.diagnosis:
        out.print(f"  {line}", markup=False)
