"""The live dashboard: optuna-dashboard on the study database and artifact store, plus the
VAE views saved into each study as Plotly figures, refreshed as trials finish (throttled)."""

from __future__ import annotations

import io
import time
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
    rd, drawn = data.fewer_points(study, data.rate_distortion(study))
    if rd.points:
        views["vae-rate-distortion"] = figures.noted(figures.rate_distortion_figure(rd), drawn, "points")
    landscape, drawn = data.fewer_landscape_points(study, data.beta_landscape(study))
    if landscape:
        views["vae-beta-landscape"] = figures.noted(figures.landscape_figure(landscape), drawn, "points")
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
    """Trial callback: refresh the dashboard's VAE views at most every ``min_interval_s`` (the
    first time that long after the run started) and never for more than ``max_share`` of the
    worker's time; call :meth:`flush` when the run ends so that the last trials are shown.

    Drawing reads every trial of the study and saving takes a few tenths of a second per
    figure, so refreshing after each of many short trials would cost more than the trials (and
    grows with the study). A view that fails to draw never fails the study; the next refresh
    tries again."""

    def __init__(self, store: ArtifactStore | None, min_interval_s: float = 10.0, max_share: float = 0.05) -> None:
        self.store = store
        self.min_interval_s = min_interval_s
        self.max_share = max_share
        # Counted from the start of the run: a run shorter than the interval draws once, at its
        # end (flush), instead of after its first trial and again at the end.
        self._last_at = time.monotonic()  # of the last refresh
        self._cost_s = 0.0  # what the last refresh took
        self._pending: optuna.Study | None = None  # a study with trials finished since then

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._pending = study
        wait = max(self.min_interval_s, self._cost_s / self.max_share)
        if time.monotonic() - self._last_at >= wait:
            self.flush()

    def flush(self) -> None:
        """Refresh now if a trial finished since the last refresh."""
        study, self._pending = self._pending, None
        if study is None:
            return
        start = time.monotonic()
        try:
            publish_vae_views(study, self.store)
        except Exception as exc:  # noqa: BLE001 - views are best effort
            optuna.logging.get_logger("tuner").warning(f"could not refresh dashboard views: {exc}")
        self._last_at = time.monotonic()
        self._cost_s = self._last_at - start
