"""Assemble the report: Optuna's own plots, the VAE views, tables, in one offline HTML file."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from optuna import visualization as vis
from optuna.trial import FrozenTrial, TrialState
from plotly.offline import get_plotlyjs

from tuner._compat import import_optuna_importance_without_sklearn, study_storage
from tuner.errors import TunerError
from tuner.report import best_trial, data, disentanglement, figures
from tuner.storage import ArtifactStore


@dataclass
class Report:
    title: str
    # (heading, body): body is a Figure, an HTML string, or a list mixing both (the summary).
    sections: list[tuple[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # figures that do not apply, with why

    @property
    def n_figures(self) -> int:
        return sum(len(_figures_of(body)) for _, body in self.sections)


def _figures_of(body: Any) -> list[go.Figure]:
    parts = body if isinstance(body, list) else [body]
    return [p for p in parts if isinstance(p, go.Figure)]


def _try(report: Report, heading: str, make: Callable[[], go.Figure]) -> None:
    """Optuna's plots refuse some studies (one trial, one parameter…): say so instead."""
    try:
        report.sections.append((heading, make()))
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError, KeyError, TypeError) as exc:
        report.skipped.append(f"{heading}: not available for this study ({exc})")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(items: dict[str, Any], css: str = "facts") -> str:
    """A two-column table of facts, the name in a row header: no empty header row."""
    rows = "".join(
        f"<tr><th scope='row'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items.items()
    )
    return f"<table class='{css}'><tbody>{rows}</tbody></table>"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _nats(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f} nats" if signed else f"{value:.2f} nats"


def summary_section(study: optuna.Study, diagnosis: str | None = None) -> Any:
    """The answer first: best val ELBO, its β schedule drawn small, what tuning bought.
    ``diagnosis``: the best trial's reading from its stored views, where the report has them
    (the same words as its best-trial section), instead of the rate and distortion alone."""
    s = data.summary(study)
    if s is None:
        if data.is_multi_objective(study):
            front = sorted(study.best_trials, key=lambda t: t.values[1])
            rows = [[t.number, _fmt(t.values[0]), _fmt(t.values[1]), _params(t.params)] for t in front]
            return (
                f"<p class='lead'>Multi-objective study: {len(front)} trials on the Pareto front of distortion "
                "against rate (both nats per image, lower is better). Pick the rate you can afford; "
                "the front comes first below.</p>" + _table(["trial", "distortion", "rate", "parameters"], rows)
            )
        return "<p class='lead'>No completed trial yet: nothing to recommend.</p>"
    gain = s.gain
    if gain is not None and s.best_number == s.baseline_number:
        gain_text = (
            f"<b>{html.escape(_nats(0.0, signed=True))}</b>: the baseline (trial {s.baseline_number}) is still "
            "the best; tuning has not beaten the default yet"
        )
    elif gain is None:
        gain_text = "over the baseline not known (no completed trial has the user attribute <code>baseline</code>)"
    else:
        gain_text = (
            f"<b>{html.escape(_nats(gain, signed=True))}</b> over the baseline (trial {s.baseline_number}, "
            f"{html.escape(_nats(s.baseline_value))})"
        )
    total = s.epochs_trained + s.epochs_saved
    saved = f" ({100 * s.epochs_saved / total:.0f} % of the epochs a full search would train)" if total else ""
    facts = {
        "best val ELBO": f"{_nats(s.best_value)} (trial {s.best_number})",
        "test NLL": _nats(s.test_nll) if s.test_nll is not None else "not measured (no refit stored one)",
        "β schedule": s.schedule_text,
        "latent size": s.latent_dim if s.latent_dim is not None else "—",
        "learning rate": f"{s.learning_rate:.3g}" if s.learning_rate is not None else "—",
        "pruned": f"{s.n_pruned} trials, {s.epochs_saved} epochs saved{saved}",
    }
    lead = (
        f"<p class='lead' id='summary-lead'>Best: trial {s.best_number}, val ELBO "
        f"<b>{html.escape(_nats(s.best_value))}</b>; gain {gain_text}.</p>"
        f"<p class='diagnosis'>Diagnosis: {html.escape(diagnosis or s.diagnosis)}</p>"
        + (f"<p class='noise'>{html.escape(s.noise)}</p>" if s.noise else "")
    )
    parts: list[Any] = ["<div class='summary'><div class='summary-text'>", lead, _facts(facts), "</div>"]
    if s.schedule is not None:
        parts += ["<div class='spark'>", figures.schedule_sparkline(s.schedule), "</div>"]
    parts.append("</div>")
    return parts


PICKER_SCRIPT = """
(function () {
  const box = document.currentScript.parentElement;
  const plot = box.previousElementSibling.querySelector('.js-plotly-plot');
  const pictures = JSON.parse(box.dataset.pictures);
  const img = box.querySelector('img'), caption = box.querySelector('.caption');
  plot.on('plotly_click', function (event) {
    const number = event.points[0].customdata;
    if (number === undefined || !(number in pictures)) return;
    img.src = 'data:image/png;base64,' + pictures[number];
    img.hidden = false;
    caption.textContent = 'Trial ' + number + ': originals (top) and reconstructions (bottom)';
  });
})();
"""


def point_picker(study: optuna.Study, store: ArtifactStore | None) -> list[Any] | None:
    """The rate–distortion plane of a multi-objective study, where clicking a trial shows the
    reconstructions it saved (None when no trial saved a picture)."""
    rd = data.rate_distortion(study)
    pictures = data.reconstruction_pictures(study, store, [p.number for p in rd.points])
    if not pictures:
        return None
    encoded = json.dumps({str(n): base64.b64encode(png).decode() for n, png in pictures.items()})
    block = (
        f"<div class='picker' data-pictures='{html.escape(encoded, quote=True)}'>"
        "<p class='caption'>Click a trial in the plane above to see its reconstructions.</p>"
        f"<img alt='reconstructions of the picked trial' hidden><script>{PICKER_SCRIPT}</script></div>"
    )
    return [figures.rate_distortion_figure(rd), block]


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


class _View(optuna.Study):
    """The study as Optuna's plots read it: without their deep copies, and limited to the trials
    ``only`` (numbers) when that is set. The history plot reads ``get_trials()`` and the
    importance plot ``study.trials`` once per parameter, each a deep copy of every trial with its
    curve rows, a guard against changes the report never makes: at 10,000 trials those copies
    were half of the report's time (benchmarks/scale.py)."""

    only: set[int] | None = None

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = super().get_trials(deepcopy=False, states=states)
        return trials if self.only is None else [t for t in trials if t.number in self.only]


def view(study: optuna.Study, only: set[int] | None = None) -> optuna.Study:
    """``study`` for Optuna's plots, on the same storage object (its trial cache shared)."""
    seen = _View(study.study_name, study_storage(study), sampler=study.sampler, pruner=study.pruner)
    seen.only = only
    return seen


@dataclass
class _Study:
    """What every section of a study's report reads, worked out once."""

    study: optuna.Study
    storage_label: str
    store: ArtifactStore | None
    with_best: bool
    plotted: optuna.Study = field(init=False)  # the study for Optuna's plots (:func:`view`)
    multi: bool = False
    best: best_trial.TrialViews | None = None  # the best trial's views, read once for every section
    best_problem: str | None = None  # why there are none
    target: dict[str, Any] = field(default_factory=dict)
    completed: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    baseline: optuna.trial.FrozenTrial | None = None

    def __post_init__(self) -> None:
        self.plotted = view(self.study)
        self.multi = data.is_multi_objective(self.study)
        self.target = (
            {"target": (lambda t: t.values[0]), "target_name": "distortion (nats)"}
            if self.multi
            else {"target_name": figures.TARGET_NAME}
        )
        self.completed = [t for t in data.real_trials(self.study) if t.state == optuna.trial.TrialState.COMPLETE]
        self.params = sorted({p for t in self.completed for p in t.params})
        self.baseline = data.baseline_trial(self.study)
        if self.with_best:
            try:
                self.best = best_trial.best_trial_views(self.study, self.store)
            except TunerError as exc:  # e.g. its weights are not in this artifact folder: the rest still reports
                self.best_problem = str(exc)
            else:
                if self.best is None:
                    self.best_problem = "no completed trial stored its views or weights yet"

    def polish(self, fig: go.Figure) -> go.Figure:
        return figures.polish_optuna(fig, target_name=self.target["target_name"])


def _summary_and_metadata(report: Report, s: _Study) -> None:
    summary = data.summary(s.study)
    same = s.best is not None and summary is not None and s.best.number == summary.best_number
    report.sections.append(("Summary", summary_section(s.study, s.best.diagnosis[0] if s.best and same else None)))
    report.sections.append(("Study", _facts(data.metadata(s.study, s.storage_label), "meta")))


def _pareto_front(report: Report, s: _Study) -> None:
    if not s.multi:
        return
    names = ["distortion (nats)", "rate (nats)"]
    _try(
        report,
        "Pareto front (distortion vs rate)",
        lambda: s.polish(vis.plot_pareto_front(s.plotted, target_names=names)),
    )
    picker = point_picker(s.study, s.store)
    if picker is not None:
        report.sections.append(("Pick a point: its reconstructions", picker))


def _landscape(report: Report, s: _Study) -> None:
    landscape = data.beta_landscape(s.study)
    if landscape:
        report.sections.append(("β landscape: why a β wins", figures.landscape_figure(landscape)))


def _optuna_plots(report: Report, s: _Study) -> None:
    """Optuna's own plots: history, importances, slices, contour, parallel coordinates."""
    import_optuna_importance_without_sklearn()
    study, target = s.plotted, s.target
    _try(report, "Optimization history", lambda: s.polish(vis.plot_optimization_history(study, **target)))
    if len(s.completed) >= 2:
        _try(report, "Parameter importances", lambda: s.polish(vis.plot_param_importances(study, **target)))
    else:
        report.skipped.append("Parameter importances: needs at least two completed trials")
    if s.params:
        _try(
            report,
            "Slices: val ELBO against each parameter" if not s.multi else "Slices: distortion against each parameter",
            lambda: figures.mark_baseline(
                s.polish(vis.plot_slice(study, params=s.params, **target)), s.baseline.number if s.baseline else None
            ),
        )
    _contour(report, s)
    _try(report, "Parallel coordinates", lambda: _parallel_coordinates(s))


def _parallel_coordinates(s: _Study) -> go.Figure:
    """Optuna's plot draws one line per completed trial: thinned as the per-epoch curves are."""
    drawn = data.thinned(s.study, [t.number for t in s.completed])
    fig = vis.plot_parallel_coordinate(view(s.study, drawn.numbers), **s.target)
    return s.polish(figures.noted(fig, drawn, "completed trials"))


def _contour(report: Report, s: _Study) -> None:
    if not {"max_beta", "anneal_epochs"} <= set(s.params):
        report.skipped.append("Contour of max_beta × annealing length: both must be searched")
        return
    if len(s.completed) >= data.MIN_CONTOUR_POINTS:
        _try(
            report,
            "Contour: max_beta × anneal_epochs",
            lambda: s.polish(vis.plot_contour(s.plotted, params=["max_beta", "anneal_epochs"], **s.target)),
        )
        return
    report.sections.append(
        (
            "Contour: max_beta × anneal_epochs",
            f"<p class='skipped'>Not drawn: {len(s.completed)} completed trials, fewer than "
            f"{data.MIN_CONTOUR_POINTS}; a contour through so few points shows ridges that are "
            "interpolation artefacts. See the β landscape and the slices instead.</p>",
        )
    )


def _curves(report: Report, s: _Study) -> None:
    """The VAE views: val ELBO per epoch, β schedules, the rate–distortion plane."""
    curves, drawn = data.drawn_elbo_curves(s.study)
    if curves:
        report.sections.append(("Validation ELBO per epoch", figures.elbo_curves_figure(curves, drawn)))
    betas = data.beta_curves(s.study)
    if betas:
        report.sections.append(("β schedules of the top trials", figures.beta_figure(betas)))
    rd = data.rate_distortion(s.study)
    if rd.points:
        report.sections.append(("Rate–distortion plane", figures.rate_distortion_figure(rd)))


def _best_trial(report: Report, s: _Study) -> None:
    if not s.with_best:
        return
    best = s.best
    if best is None:
        report.skipped.append(f"Best-trial views: {s.best_problem}")
        return
    report.sections.append((f"Best trial {best.number}: reconstructions and samples", figures.images_figure(best)))
    report.sections.append(("KL per latent dimension", figures.kl_per_dim_figure(best)))
    report.sections.append(("Diagnosis", "".join(f"<p>{html.escape(d)}</p>" for d in best.diagnosis)))
    across = best_trial.views_across_beta(s.study, s.store)
    if len(across) >= 2:
        report.sections.append(("Reconstructions across β (top trials)", figures.across_beta_figure(across)))
    if across:
        report.sections.append(("Reconstruction quality of the top trials", quality_table(across)))


def _bits(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "—"


def quality_table(views: list[best_trial.TrialViews]) -> str:
    """Per trial: β, val ELBO, bits per dimension beside the uniform model's 8 and PNG's, PSNR,
    SSIM, sharpness, active units and the first line of its diagnosis."""
    rows = [
        [
            v.number,
            _fmt(v.max_beta) if v.max_beta is not None else "—",
            _nats(v.val_elbo),
            f"{_bits(v.bits_per_dim)} (uniform 8.000, PNG {_bits(v.png_bits_per_dim)})" if v.bits_per_dim else "—",
            f"{v.psnr_db:.2f}" if v.psnr_db is not None else "—",
            f"{v.ssim:.3f}" if v.ssim is not None else "—",
            f"{v.sharpness:.2f}" if v.sharpness is not None else "—",
            f"{v.active_units} / {v.latent_dim}",
            v.diagnosis[0],
        ]
        for v in views
    ]
    header = ["trial", "max β", "val ELBO", "bits/dim", "PSNR (dB)", "SSIM", "sharpness", "active units", "diagnosis"]
    return _table(header, rows)


def _tables(report: Report, s: _Study) -> None:
    """Failed trials with their reasons, then the top trials."""
    failed = data.failed_trials(s.study)
    report.sections.append(
        (
            "Failed trials",
            _table(["trial", "reason", "parameters"], [[f.number, f.reason, _params(f.params)] for f in failed])
            if failed
            else "<p>None.</p>",
        )
    )
    value_names = s.study.metric_names or (["distortion", "rate"] if s.multi else ["val_elbo"])
    rows = [
        [r.number, *[_fmt(v) for v in r.values], _params(r.params), _fmt(r.duration_s)] for r in data.top_table(s.study)
    ]
    report.sections.append(
        (
            "Top trials",
            _table(["trial", *value_names, "parameters", "seconds"], rows)
            if rows
            else "<p>No completed trial yet.</p>",
        )
    )


# A study's report, in order: each adds its sections (or a note on why one is skipped).
STUDY_SECTIONS: list[Callable[[Report, _Study], None]] = [
    _summary_and_metadata,
    _pareto_front,
    _landscape,
    _optuna_plots,
    _curves,
    lambda report, s: report.sections.extend(disentanglement.sections(s.study, s.store)),
    _best_trial,
    _tables,
]


def build_report(
    study: optuna.Study, storage_label: str, store: ArtifactStore | None = None, with_best: bool = True
) -> Report:
    report = Report(f"β study {study.study_name!r}")
    context = _Study(study, storage_label, store, with_best)
    for section in STUDY_SECTIONS:
        section(report, context)
    return report


def build_comparison(studies: list[optuna.Study], storage_label: str) -> Report:
    """Several studies side by side: best configs and gains in one table, their
    rate–distortion points and val ELBO against max β on common axes."""
    names = [s.study_name for s in studies]
    report = Report("β studies compared: " + ", ".join(repr(n) for n in names))
    rows = []
    for study in studies:
        s = data.summary(study)
        if s is None:
            rows.append([study.study_name, "—", "—", "—", "—"])
            continue
        best = study.trials[s.best_number]
        rows.append(
            [study.study_name, f"{_nats(s.best_value)} (trial {s.best_number})", _nats(s.gain, signed=True),
             s.schedule_text, _params(best.params)]
        )  # fmt: skip
    report.sections.append(
        (
            "Summary",
            "<p class='lead' id='summary-lead'>Best val ELBO and gain over each study's baseline, in nats per image "
            f"(storage {html.escape(storage_label)}).</p>"
            + _table(["study", "best val ELBO", "gain over baseline", "β schedule", "best parameters"], rows),
        )
    )
    fronts = [(s.study_name, data.rate_distortion(s)) for s in studies]
    if any(rd.points for _, rd in fronts):
        report.sections.append(("Rate–distortion, common axes", figures.compare_fronts_figure(fronts)))
    scapes = [(s.study_name, data.beta_landscape(s)) for s in studies]
    if any(points for _, points in scapes):
        report.sections.append(("val ELBO against max β, common axes", figures.compare_landscapes_figure(scapes)))
    return report


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th[scope=row] { background: #f6f6f6; font-weight: 600; white-space: nowrap; }
.summary { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
.summary-text { flex: 1 1 500px; }
.lead { font-size: 1.25em; margin: 0.3em 0; }
.diagnosis { color: #444; }
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
        for j, part in enumerate(body if isinstance(body, list) else [body]):
            if isinstance(part, go.Figure):
                parts.append(
                    part.to_html(
                        full_html=False,
                        include_plotlyjs=False,
                        div_id=f"figure-{i}-{j}",
                        config={"displaylogo": False},
                    )
                )
            else:
                parts.append(part)
    if report.skipped:
        parts.append("<h2>Not shown</h2>" + "".join(f"<p class='skipped'>{html.escape(s)}</p>" for s in report.skipped))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, path: Path) -> Path:
    """Write the report under a temporary name and rename it: a full disk never leaves half a
    report where the whole one was."""
    from tuner.storage import atomic_path

    page = render(report).encode("utf-8")
    with atomic_path(path, need_bytes=len(page)) as tmp:
        tmp.write_bytes(page)
    return path
