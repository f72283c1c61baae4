"""The layout of one epoch's metrics (a "curve row"), written down once.

Training produces these rows (:class:`~tuner.vae.training.EpochRecorder`), a study stores one
per epoch and trial, and reports, pruning and the synthetic studies of :mod:`tuner.testing`
read them. All values are floats; losses are nats per image.
"""

from __future__ import annotations

from typing import TypedDict


class CurveRow(TypedDict):
    epoch: int  # 1-based
    loss: float  # training loss: recon + β·KL (with free bits), mean over the epoch's batches
    recon: float  # training reconstruction NLL
    kl: float  # training KL(q(z|x) || p(z))
    elbo: float  # training ELBO at β = 1: −(recon + kl)
    beta: float  # mean β over the epoch's steps
    beta_end: float  # β after the epoch's last step
    val_loss: float  # validation loss at β = 1 (equals −val_elbo)
    val_recon: float
    val_kl: float
    val_elbo: float  # the study's objective: validation ELBO at β = 1
    epoch_time: float  # seconds of training and validation in this epoch


CURVE_FIELDS: tuple[str, ...] = tuple(CurveRow.__annotations__)
