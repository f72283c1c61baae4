"""Assemble the report: Optuna's own plots, the VAE views, tables, in one offline HTML file."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tuner.report import data, figures
from tuner.storage import ArtifactStore


@dataclass
class Report:
    title: str
    sections: list[tuple[str, Any]] = field(default_factory=list)  # (heading, Figure | html str)
    skipped: list[str] = field(default_factory=list)  # figures that do not apply, with why

    @property
    def n_figures(self) -> int:
        return sum(isinstance(body, go.Figure) for _, body in self.sections)


def _try(report: Report, heading: str, make: Callable[[], go.Figure]) -> None:
    """Optuna's plots refuse some studies (one trial, one parameter…): say so instead."""
    try:
        report.sections.append((heading, make()))
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
        report.skipped.append(f"{heading}: not available for this study ({exc})")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def build_report(
    study: optuna.Study, storage_label: str, store: ArtifactStore | None = None, with_best: bool = True
) -> Report:
    vis = optuna.visualization
    multi = data.is_multi_objective(study)
    target: dict[str, Any] = {"target": (lambda t: t.values[0]), "target_name": "distortion"} if multi else {}
    report = Report(f"β study {study.study_name!r}")
    meta = data.metadata(study, storage_label)
    report.sections.append(("Study", _table(["", ""], [[k, v] for k, v in meta.items()])))
    completed = [t for t in data.real_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    params = sorted({p for t in completed for p in t.params})
    if multi:
        _try(
            report,
            "Pareto front (distortion vs rate)",
            lambda: vis.plot_pareto_front(study, target_names=["distortion", "rate"]),
        )
    _try(report, "Optimization history", lambda: vis.plot_optimization_history(study, **target))
    if len(completed) >= 2:
        _try(report, "Parameter importances", lambda: vis.plot_param_importances(study, **target))
    else:
        report.skipped.append("Parameter importances: needs at least two completed trials")
    _try(report, "Parallel coordinates", lambda: vis.plot_parallel_coordinate(study, **target))
    for name in params:
        _try(report, f"Slice: {name}", functools.partial(vis.plot_slice, study, params=[name], **target))
    if {"max_beta", "anneal_epochs"} <= set(params):
        _try(
            report,
            "Contour: max_beta × anneal_epochs",
            lambda: vis.plot_contour(study, params=["max_beta", "anneal_epochs"], **target),
        )
    else:
        report.skipped.append("Contour of max_beta × annealing length: both must be searched")
    curves = data.elbo_curves(study)
    if curves:
        report.sections.append(("Validation ELBO per epoch", figures.elbo_curves_figure(curves)))
    failed = data.failed_trials(study)
    report.sections.append(
        (
            "Failed trials",
            _table(["trial", "reason", "parameters"], [[f.number, f.reason, f.params] for f in failed])
            if failed
            else "<p>None.</p>",
        )
    )
    betas = data.beta_curves(study)
    if betas:
        report.sections.append(("β schedules of the top trials", figures.beta_figure(betas)))
    rd = data.rate_distortion(study)
    if rd.points:
        report.sections.append(("Rate–distortion plane", figures.rate_distortion_figure(rd)))
    if with_best:
        best = data.best_trial_views(study, store)
        if best is not None:
            report.sections.append(
                (f"Best trial {best.number}: reconstructions and samples", figures.images_figure(best))
            )
            report.sections.append(("KL per latent dimension", figures.kl_per_dim_figure(best)))
            report.sections.append(("Diagnosis", "".join(f"<p>{html.escape(d)}</p>" for d in best.diagnosis)))
        else:
            report.skipped.append("Best-trial views: no completed trial with stored weights yet")
    value_names = study.metric_names or (["distortion", "rate"] if multi else ["val_elbo"])
    rows = [
        [
            r.number,
            *[_fmt(v) for v in r.values],
            ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items()),
            _fmt(r.duration_s),
        ]
        for r in data.top_table(study)
    ]
    report.sections.append(
        (
            "Top trials",
            _table(["trial", *value_names, "parameters", "seconds"], rows)
            if rows
            else "<p>No completed trial yet.</p>",
        )
    )
    return report


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
.skipped { color: #777; font-size: 0.9em; }
"""


def render(report: Report) -> str:
    """One HTML document with plotly.js embedded once: it opens offline."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>{STYLE}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    for i, (heading, body) in enumerate(report.sections):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, go.Figure):
            parts.append(
                body.to_html(
                    full_html=False, include_plotlyjs=False, div_id=f"figure-{i}", config={"displaylogo": False}
                )
            )
        else:
            parts.append(body)
    if report.skipped:
        parts.append("<h2>Not shown</h2>" + "".join(f"<p class='skipped'>{html.escape(s)}</p>" for s in report.skipped))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path
