"""The live dashboard: optuna-dashboard on the study database and artifact store, plus the
VAE views saved into each study as Plotly figures, refreshed after every finished trial."""

from __future__ import annotations

import io
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tuner.report import data, disentanglement, figures
from tuner.search.records import RECON_ATTR, refit_records
from tuner.storage import ArtifactStore


def best_reconstruction_figure(study: optuna.Study, store: ArtifactStore) -> Any:
    """The best trial's reconstruction picture (an artifact already written by the trial)."""
    import numpy as np
    from PIL import Image

    for trial in data.ranked_trials(study, 3):
        artifact_id = trial.user_attrs.get(RECON_ATTR)
        if artifact_id:
            with store.open_reader(artifact_id) as reader:
                pixels = np.asarray(Image.open(io.BytesIO(reader.read())))  # L or RGB, as saved
            return figures.picture_figure(
                pixels, f"Best trial {trial.number}: originals (top) and reconstructions (bottom)"
            )
    return None


def vae_views(study: optuna.Study, store: ArtifactStore | None) -> dict[str, Any]:
    views: dict[str, Any] = {}
    # The dashboard's own intermediate-values panel already holds val ELBO per epoch: show
    # what it lacks, the rate and distortion per epoch of the top trials.
    rates = data.rate_distortion_curves(study)
    if rates:
        views["vae-rate-distortion-curves"] = figures.rate_distortion_curves_figure(rates)
    betas = data.beta_curves(study)
    if betas:
        views["vae-beta-schedules"] = figures.beta_figure(betas)
    rd = data.rate_distortion(study)
    if rd.points:
        views["vae-rate-distortion"] = figures.rate_distortion_figure(rd)
    landscape = data.beta_landscape(study)
    if landscape:
        views["vae-beta-landscape"] = figures.landscape_figure(landscape)
    views.update(disentanglement.views(study, store))
    refits = refit_records(study)
    if refits:
        views["vae-refits"] = figures.refit_figure(refits)
    if store is not None:
        recon = best_reconstruction_figure(study, store)
        if recon is not None:
            views["vae-best-reconstructions"] = recon
    return views


def publish_vae_views(study: optuna.Study, store: ArtifactStore | None) -> list[str]:
    """Save (overwrite) the VAE figures into the study, where optuna-dashboard shows them."""
    from optuna_dashboard import save_plotly_graph_object

    views = vae_views(study, store)
    for view_id, figure in views.items():
        save_plotly_graph_object(study, figure, graph_object_id=view_id)
    return list(views)


class RefreshViews:
    """Trial callback: refresh the dashboard's VAE views. A view that fails to draw never
    fails the study; the next trial tries again."""

    def __init__(self, store: ArtifactStore | None) -> None:
        self.store = store

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        try:
            publish_vae_views(study, self.store)
        except Exception as exc:  # noqa: BLE001 - views are best effort
            optuna.logging.get_logger("tuner").warning(f"could not refresh dashboard views: {exc}")
