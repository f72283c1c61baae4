"""Terminal output shared by the commands: one console for results, one for messages."""

from __future__ import annotations

import math

from rich.console import Console

from tuner.vae.curves import CurveRow

# soft_wrap: long result lines stay one line in logs and pipes instead of wrapping at 80.
out = Console(highlight=False, soft_wrap=True, emoji=False)  # ":x:" in a path stays ":x:"
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def epoch_line(epoch: int, total: int, metrics: CurveRow) -> str:
    return (
        f"epoch {epoch}/{total}  recon {fmt(metrics.get('recon'))}  KL {fmt(metrics.get('kl'))}  "
        f"β {fmt(metrics.get('beta_end'), 3)}  val ELBO {fmt(metrics.get('val_elbo'))}  "
        f"({fmt(metrics.get('epoch_time'), 1)} s)"
    )
