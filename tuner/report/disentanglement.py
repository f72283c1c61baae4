"""The disentanglement views of a study scored on known factors (``objective: {name:
disentanglement}`` or ``elbo_and_disentanglement``): every trial's scores, the scores against
β, and the latent traversal of the best trial.

:func:`trial_scores` is pure data read from the trials' ``disentanglement`` attribute (no
deep-learning backend); :func:`score_table`, :func:`scores_against_beta_figure` and
:func:`traversal_figure` draw it; :func:`sections` is the report's part and :func:`views` the
dashboard's. The traversal is the PNG the trial stored when it finished: no model is rebuilt.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import plotly.graph_objects as go
from optuna.trial import TrialState

from tuner.report import figures
from tuner.search.records import CONFIG_ATTR, SCORES_ATTR, TRAVERSAL_ATTR
from tuner.storage import ArtifactStore

SCORE_NAMES = {
    "mig": "MIG",
    "dci_disentanglement": "DCI disentanglement",
    "dci_completeness": "DCI completeness",
    "dci_informativeness": "DCI informativeness",
    "sap": "SAP",
}
OBJECTIVE_SCORE = {"mig": "mig", "dci": "dci_disentanglement", "sap": "sap"}


@dataclass(frozen=True)
class TrialScores:
    number: int
    max_beta: float | None
    scores: dict[str, float]


def trial_scores(study: optuna.Study) -> list[TrialScores]:
    """The scores of every completed trial that has them, by trial number."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=[TrialState.COMPLETE]):
        scores = trial.user_attrs.get(SCORES_ATTR)
        if not isinstance(scores, dict):
            continue
        schedule = (trial.user_attrs.get(CONFIG_ATTR) or {}).get("schedule", {})
        beta = schedule.get("max_beta")
        rows.append(TrialScores(trial.number, float(beta) if beta is not None else None, dict(scores)))
    return rows


def best_scored(study: optuna.Study, rows: list[TrialScores]) -> TrialScores | None:
    """The trial with the highest score of the study's metric (the first metric name that is
    a score: ``mig``, ``dci`` or ``sap``)."""
    metric = next((OBJECTIVE_SCORE[m] for m in study.metric_names or [] if m in OBJECTIVE_SCORE), "mig")
    return max(rows, key=lambda r: r.scores.get(metric, float("-inf")), default=None)


def score_table(rows: list[TrialScores]) -> str:
    header = ["trial", "max β", *SCORE_NAMES.values(), "active units"]
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for r in rows:
        values = [r.number, "—" if r.max_beta is None else f"{r.max_beta:.3g}"]
        values += [f"{r.scores.get(k, float('nan')):.3f}" for k in SCORE_NAMES]
        values.append(r.scores.get("active_units", "—"))
        body.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in values) + "</tr>")
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


def scores_against_beta_figure(rows: list[TrialScores]) -> go.Figure:
    """MIG, DCI disentanglement and SAP of each trial against its max β (log axis)."""
    fig = go.Figure()
    placed = [r for r in rows if r.max_beta is not None and r.max_beta > 0]
    for key in ("mig", "dci_disentanglement", "sap"):
        fig.add_trace(
            go.Scatter(
                x=[r.max_beta for r in placed],
                y=[r.scores.get(key) for r in placed],
                mode="markers",
                name=SCORE_NAMES[key],
                text=[f"trial {r.number}" for r in placed],
            )
        )
    fig.update_layout(
        title="Disentanglement against β", xaxis={"title": "max β", "type": "log"}, yaxis={"title": "score"}
    )
    return fig


def traversal_figure(study: optuna.Study, store: ArtifactStore, best: TrialScores) -> go.Figure | None:
    """The best trial's latent traversal picture, or None when it stored none."""
    from PIL import Image

    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == best.number)
    artifact_id = trial.user_attrs.get(TRAVERSAL_ATTR)
    if not artifact_id:
        return None
    with store.open_reader(artifact_id) as reader:
        pixels = np.asarray(Image.open(io.BytesIO(reader.read())))
    units = trial.user_attrs.get(f"{TRAVERSAL_ATTR}:units", [])
    return figures.picture_figure(
        pixels,
        f"Trial {trial.number}: latent traversal, one row per unit ({', '.join(f'z{u}' for u in units)}), "
        "swept from -2.5 to 2.5 with the others fixed",
    )


def sections(study: optuna.Study, store: ArtifactStore | None) -> list[tuple[str, Any]]:
    """The report's disentanglement sections; none for a study without scores."""
    rows = trial_scores(study)
    if not rows:
        return []
    found: list[tuple[str, Any]] = [
        ("Disentanglement scores per trial", score_table(rows)),
        ("Disentanglement against β", scores_against_beta_figure(rows)),
    ]
    best = best_scored(study, rows)
    if store is not None and best is not None:
        try:
            picture = traversal_figure(study, store, best)
        except Exception:  # noqa: BLE001 - an artifact folder without it: the rest still reports
            picture = None
        if picture is not None:
            found.append((f"Best trial {best.number}: latent traversal", picture))
    return found


def views(study: optuna.Study, store: ArtifactStore | None) -> dict[str, go.Figure]:
    """The dashboard's disentanglement views (figures only), keyed by view id."""
    return {
        f"vae-disentanglement-{i}": body
        for i, (_, body) in enumerate(sections(study, store))
        if isinstance(body, go.Figure)
    }
