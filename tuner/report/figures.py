"""Drawing functions: each takes the output of a ``data.py`` function and returns a figure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from tuner.report.best_trial import BestViews
from tuner.report.data import (
    BetaCurve,
    Drawn,
    LandscapePoint,
    LatestRates,
    RateDistortion,
    TrialCurve,
    trial_color,
)
from tuner.vae.pictures import image_grid

STATE_STYLE = {"complete": "solid", "pruned": "dot", "running": "dash", "fail": "dashdot"}
TARGET_NAME = "val ELBO (nats)"
LOG_PARAMS = ("learning_rate", "max_beta", "latent_dim")  # sampled on a log scale
# Legends go under the plot, colour bars to its right: the two never overlap.
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0.0}


LEGEND_RIGHT = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0}


def _layout(fig: go.Figure, title: str, x: str, y: str, legend: dict[str, object] | None = None) -> go.Figure:
    """Common look; ``legend`` defaults to the right of the plot, for figures without a colour bar."""
    fig.update_layout(
        title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=420, legend=legend or LEGEND_RIGHT
    )
    return fig


def log_ticks(lo: float = 1e-6, hi: float = 1e4) -> tuple[list[float], list[str]]:
    """1-2-5 ticks per decade, labelled in full ("0.002", not "2"): readable log axes."""
    values = [
        m * 10.0**k for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1) for m in (1, 2, 5)
    ]
    return values, [f"{v:g}" for v in values]


def integer_epochs(fig: go.Figure, axis: str = "xaxis") -> go.Figure:
    """Epochs are whole numbers: no 1.2 or 1.4 ticks."""
    fig.update_layout({axis: {"tickformat": "d", "dtick": _integer_step(_max_x(fig))}})
    return fig


def _integer_step(largest: float) -> int:
    """A whole-number tick step that gives at most about ten ticks (no repeated "0 0 1 1")."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if largest / step <= 10:
            return step
    return 1000


def _max_x(fig: go.Figure) -> float:
    xs = [
        float(np.nanmax(np.asarray(t.x, dtype=float)))
        for t in fig.data
        if getattr(t, "x", None) is not None and len(t.x)
    ]
    return max(xs, default=0.0)


def polish_optuna(fig: go.Figure, log_params: Iterable[str] = LOG_PARAMS, target_name: str = TARGET_NAME) -> go.Figure:
    """Optuna's figures, made readable: log axes with 1-2-5 ticks for log-sampled
    parameters, a title on every axis, integer trial axes, legends under the plot."""
    log_params = set(log_params)
    if fig.layout.xaxis.ticktext and not fig.layout.xaxis.title.text:  # parallel coordinates
        names = [target_name if t == "Objective Value" else t for t in fig.layout.xaxis.ticktext]
        fig.update_xaxes(ticktext=names, title_text="parameter (each axis spans its own range)")
    values, text = log_ticks()
    first_y = ""
    for key in sorted(k for k in fig.layout if k.startswith(("xaxis", "yaxis"))):
        axis = fig.layout[key]
        title = axis.title.text or ""
        if key == "yaxis":
            first_y = title
        if title in log_params or axis.type == "log":
            fig.layout[key].update(type="log", tickvals=values, ticktext=text, tickangle=0)
        if title == "Trial":
            fig.layout[key].update(tickformat="d", dtick=_integer_step(_max_x(fig)), title_text="trial number")
    for key in fig.layout:
        if key.startswith("yaxis") and not fig.layout[key].title.text and first_y:
            fig.layout[key].update(title_text=first_y)
    fig.update_layout(legend=LEGEND_BELOW, template="plotly_white")
    return fig


def mark_baseline(fig: go.Figure, baseline: int | None) -> go.Figure:
    """The slice plot colours points by trial number from near-white: draw it on a darker
    scale and ring the baseline trial in red so it is seen in every panel."""
    for trace in list(fig.data):
        colors = getattr(trace.marker, "color", None) if trace.type == "scatter" else None
        if trace.marker.colorscale is not None:
            trace.marker.colorscale = "Viridis"
        if baseline is None or colors is None or isinstance(colors, str):
            continue
        hits = [i for i, c in enumerate(colors) if c == baseline]
        if hits:
            fig.add_trace(
                go.Scatter(
                    x=[trace.x[i] for i in hits],
                    y=[trace.y[i] for i in hits],
                    xaxis=trace.xaxis,
                    yaxis=trace.yaxis,
                    mode="markers",
                    marker={"symbol": "circle-open", "size": 14, "color": "crimson", "line": {"width": 2}},
                    name=f"baseline (trial {baseline})",
                    showlegend=trace.xaxis in (None, "x"),
                )
            )
    return fig


def thinned_note(drawn: Drawn, what: str = "trials") -> str:
    """A subtitle saying how many of how many trials a figure draws, and which ("" when all)."""
    if len(drawn.numbers) >= drawn.total:
        return ""
    return (
        f"<br><sup>{len(drawn.numbers)} of {drawn.total:,} {what} drawn: the best {drawn.best} and "
        f"{len(drawn.numbers) - drawn.best} others spread evenly over trial numbers</sup>"
    )


def noted(fig: go.Figure, drawn: Drawn, what: str = "trials") -> go.Figure:
    """``fig`` with :func:`thinned_note` under its title."""
    note = thinned_note(drawn, what)
    if note:
        fig.update_layout(title_text=f"{fig.layout.title.text or ''}{note}")
    return fig


def elbo_curves_figure(curves: list[TrialCurve], drawn: Drawn | None = None) -> go.Figure:
    """One line per trial; ``drawn`` says in the title when they were thinned (``data.drawn_elbo_curves``)."""
    fig = go.Figure()
    for c in curves:
        fig.add_trace(
            go.Scatter(
                x=c.epochs,
                y=c.val_elbo,
                mode="lines",
                name=f"trial {c.number} ({c.state})",
                line={"dash": STATE_STYLE.get(c.state, "solid"), "width": 1.5, "color": trial_color(c.number)},
                legendgroup=c.state,
            )
        )
    pruned = [c for c in curves if c.pruned_at is not None]
    if pruned:
        fig.add_trace(
            go.Scatter(
                x=[c.pruned_at for c in pruned],
                y=[
                    c.val_elbo[c.epochs.index(c.pruned_at)] if c.pruned_at in c.epochs else c.val_elbo[-1]
                    for c in pruned
                ],
                mode="markers",
                marker={"symbol": "x", "size": 10, "color": "crimson"},
                name="pruned here",
                text=[f"trial {c.number} pruned at epoch {c.pruned_at}" for c in pruned],
            )
        )
    _layout(fig, "Validation ELBO per epoch (β = 1, nats per image)", "epoch", TARGET_NAME)
    return integer_epochs(noted(fig, drawn) if drawn else fig)


def beta_figure(curves: list[BetaCurve]) -> go.Figure:
    fig = go.Figure()
    for c in curves:
        fig.add_trace(
            go.Scatter(
                x=c.steps / c.steps_per_epoch,
                y=c.beta,
                mode="lines",
                name=f"trial {c.number}",
                line={"color": trial_color(c.number)},
            )
        )
    # A β controller's curve holds one point per epoch (its recorded β), a schedule's many.
    for trace, c in zip(fig.data, curves, strict=True):
        if len(c.steps) <= c.steps[-1] // max(c.steps_per_epoch, 1) + 1:
            trace.mode = "lines+markers"
    _layout(fig, "β(t) of the top trials, from their schedules or as their controllers set it", "epoch", "β")
    return integer_epochs(fig)


def schedule_sparkline(curve: BetaCurve) -> go.Figure:
    """The best trial's β(t), drawn small for the summary."""
    fig = go.Figure(
        go.Scatter(
            x=curve.steps / curve.steps_per_epoch,
            y=curve.beta,
            mode="lines",
            line={"color": trial_color(curve.number), "width": 2},
            fill="tozeroy",
            name=f"trial {curve.number}",
            showlegend=False,
        )
    )
    fig.update_layout(
        template="plotly_white",
        height=170,
        width=320,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        xaxis_title="epoch",
        yaxis_title="β",
    )
    return integer_epochs(fig)


def _beta_colorbar(betas: Sequence[float]) -> dict[str, object]:
    """Marker settings that colour by max β on a log scale, with β (not log10 β) on the bar."""
    finite = [b for b in betas if np.isfinite(b) and b > 0]
    values, text = log_ticks(min(finite, default=1e-3), max(finite, default=10.0))
    logs = [float(np.log10(v)) for v in values]
    return {
        "color": np.log10(np.maximum(np.asarray(betas, dtype=float), 1e-6)),
        "colorscale": "Viridis",
        "showscale": True,
        "colorbar": {"title": {"text": "max β", "side": "top"}, "tickvals": logs, "ticktext": text, "x": 1.02},
        "size": 10,
        "line": {"width": 0.5, "color": "white"},
    }


def _front_trace(rd: RateDistortion, name: str, **style: Any) -> go.Scatter | None:
    """The Pareto front of ``rd`` as one line, by increasing rate (None without a front)."""
    front = sorted((p for p in rd.points if p.number in rd.pareto), key=lambda p: p.rate)
    if not front:
        return None
    return go.Scatter(x=[p.rate for p in front], y=[p.distortion for p in front], name=name, **style)


def rate_distortion_figure(rd: RateDistortion) -> go.Figure:
    fig = go.Figure()
    rates = np.array([p.rate for p in rd.points], dtype=float)
    if len(rates):
        r_max = float(rates.max()) * 1.2 + 1.0
        for level in rd.elbo_levels:  # rate + distortion = -ELBO
            r = np.linspace(0.0, r_max, 50)
            fig.add_trace(
                go.Scatter(
                    x=r,
                    y=-level - r,
                    mode="lines",
                    line={"color": "lightgrey", "dash": "dot"},
                    name=f"ELBO = {level:.1f}",
                    hoverinfo="name",
                    showlegend=False,
                )
            )
    betas = [p.max_beta if p.max_beta is not None else np.nan for p in rd.points]
    fig.add_trace(
        go.Scatter(
            x=[p.rate for p in rd.points],
            y=[p.distortion for p in rd.points],
            mode="markers",
            name="trials",
            text=[f"trial {p.number} ({p.state}), max β = {b:.3g}" for p, b in zip(rd.points, betas, strict=False)],
            customdata=[p.number for p in rd.points],  # the report's point picker reads it
            marker=_beta_colorbar(betas),
        )
    )
    front = _front_trace(rd, "Pareto front", mode="lines+markers", line={"color": "crimson"})
    if front is not None:
        fig.add_trace(front)
    if len(rates):
        dist = np.array([p.distortion for p in rd.points], dtype=float)
        fig.update_yaxes(range=[float(dist.min()) * 0.95 - 1, float(dist.max()) * 1.05 + 1])
    return _layout(
        fig,
        "Rate–distortion plane (dotted: lines of equal ELBO; colour: max β)",
        "rate: KL (nats)",
        "distortion: recon NLL (nats)",
        LEGEND_BELOW,
    )


def picture_figure(pixels: np.ndarray, title: str) -> go.Figure:
    """A uint8 picture, (H, W) grayscale or (H, W, 3) RGB, as a figure without axes. The
    colour follows the data: a picture whose channels are all equal (grey data saved as RGB)
    is drawn grey, an RGB one in colour."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and (pixels.shape[-1] == 1 or np.array_equal(pixels[..., :1].repeat(3, -1), pixels[..., :3])):
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    if pixels.ndim == 2:
        fig = go.Figure(go.Heatmap(z=pixels[::-1].astype(float) / 255.0, colorscale="gray", showscale=False))
    else:
        fig = go.Figure(go.Image(z=pixels))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    return _layout(fig, title, "", "")


def images_figure(best: BestViews) -> go.Figure:
    grid = image_grid([best.originals, best.reconstructions, best.samples])
    return picture_figure(
        grid, f"Trial {best.number}: originals (top), reconstructions (middle), samples from the prior (bottom)"
    )


def across_beta_figure(views: list[BestViews]) -> go.Figure:
    """The same validation images (top row) reconstructed by each of the top trials, one row
    per trial in order of its maximum β: the β–blur trade-off seen, not only read."""
    grid = image_grid([views[0].originals, *[v.reconstructions for v in views]])
    rows = "; ".join(
        f"trial {v.number} (β {v.max_beta:.3g})" if v.max_beta is not None else f"trial {v.number}" for v in views
    )
    return picture_figure(grid, f"Originals (top), then reconstructions by rising β: {rows}")


def kl_per_dim_figure(best: BestViews) -> go.Figure:
    order = np.argsort(best.kl_per_dim)[::-1]
    fig = go.Figure(go.Bar(x=[f"z{i}" for i in order], y=[best.kl_per_dim[i] for i in order]))
    return _layout(
        fig,
        f"KL per latent dimension, trial {best.number}: {best.active_units} of {best.latent_dim} units active",
        "latent dimension (sorted)",
        "KL (nats)",
    )


def landscape_figure(points: list[LandscapePoint], top: int = 5) -> go.Figure:
    """Left: val ELBO against max β (log axis), every completed trial a point coloured by its
    annealing length. Right: the rate/distortion split of the best few, so the reader sees
    why a β wins (rate bought against distortion paid)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        horizontal_spacing=0.14,
        subplot_titles=("val ELBO vs max β", f"−ELBO split, best {top}"),
    )
    anneal = [p.anneal_epochs if p.anneal_epochs is not None else np.nan for p in points]
    fig.add_trace(
        go.Scatter(
            x=[p.max_beta for p in points],
            y=[p.value for p in points],
            mode="markers",
            name="trials",
            text=[f"trial {p.number}: max β = {p.max_beta:.3g}, anneal {p.anneal_epochs}" for p in points],
            marker={
                "color": anneal,
                "colorscale": "Cividis",
                "showscale": True,
                "size": 10,
                "line": {"width": 1, "color": [trial_color(p.number) for p in points]},
                # Under the left panel, beside the legend (under the right one): in a narrow
                # dashboard card a vertical bar would cover the right panel's axis.
                "colorbar": {
                    "title": {"text": "annealing epochs", "side": "top"},
                    "orientation": "h",
                    "x": 0.0,
                    "xanchor": "left",
                    "y": -0.3,
                    "yanchor": "top",
                    "len": 0.5,
                    "thickness": 12,
                    "dtick": _integer_step(max((a for a in anneal if np.isfinite(a)), default=1.0)),
                },
            },
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    best = [p for p in points if p.rate is not None and p.distortion is not None][:top]
    labels = [f"trial {p.number}<br>β={p.max_beta:.2g}" for p in best]
    fig.add_trace(
        go.Bar(x=labels, y=[p.distortion for p in best], name="distortion (recon NLL)", marker_color="#4C78A8"),
        row=1,
        col=2,
    )
    fig.add_trace(go.Bar(x=labels, y=[p.rate for p in best], name="rate (KL)", marker_color="#F58518"), row=1, col=2)
    values, text = log_ticks()
    fig.update_xaxes(type="log", tickvals=values, ticktext=text, title_text="max β", row=1, col=1)
    fig.update_yaxes(title_text=TARGET_NAME, row=1, col=1)
    fig.update_xaxes(title_text="trial (best first)", row=1, col=2)
    fig.update_yaxes(title_text="nats per image", row=1, col=2)
    fig.update_layout(
        barmode="stack",
        template="plotly_white",
        height=520,
        margin={"b": 150},
        legend={**LEGEND_BELOW, "x": 0.62, "y": -0.3},
    )
    return fig


def rate_distortion_curves_figure(curves: list[LatestRates]) -> go.Figure:
    """Rate (dashed) and distortion (solid) per epoch of the top trials, one colour per trial."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("distortion: recon NLL", "rate: KL"), horizontal_spacing=0.12)
    for c in curves:
        color = trial_color(c.number)
        fig.add_trace(
            go.Scatter(x=c.epochs, y=c.distortion, mode="lines", name=f"trial {c.number}", line={"color": color}),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=c.epochs, y=c.rate, mode="lines", line={"color": color}, showlegend=False, name=f"trial {c.number}"
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="epoch", tickformat="d", dtick=_integer_step(_max_x(fig)))
    fig.update_yaxes(title_text="nats per image")
    fig.update_layout(
        title="Rate and distortion per epoch of the top trials",
        template="plotly_white",
        height=420,
        legend=LEGEND_BELOW,
    )
    return fig


def compare_fronts_figure(named: list[tuple[str, RateDistortion]]) -> go.Figure:
    """The rate–distortion points of several studies on common axes, one colour per study."""
    fig = go.Figure()
    for i, (name, rd) in enumerate(named):
        color = trial_color(i * 3)
        fig.add_trace(
            go.Scatter(
                x=[p.rate for p in rd.points],
                y=[p.distortion for p in rd.points],
                mode="markers",
                name=f"{name}: trials",
                marker={"color": color, "size": 8, "opacity": 0.6},
                text=[f"{name} trial {p.number}" for p in rd.points],
            )
        )
        front = _front_trace(rd, f"{name}: front", mode="lines", line={"color": color, "width": 2})
        if front is not None:
            fig.add_trace(front)
    return _layout(fig, "Rate–distortion of each study, common axes", "rate: KL (nats)", "distortion: recon NLL (nats)")


def compare_landscapes_figure(named: list[tuple[str, list[LandscapePoint]]]) -> go.Figure:
    """val ELBO against max β (log axis) of several studies, one colour per study."""
    fig = go.Figure()
    for i, (name, points) in enumerate(named):
        fig.add_trace(
            go.Scatter(
                x=[p.max_beta for p in points],
                y=[p.value for p in points],
                mode="markers",
                name=name,
                marker={"color": trial_color(i * 3), "size": 9},
                text=[f"{name} trial {p.number}" for p in points],
            )
        )
    values, text = log_ticks()
    fig.update_xaxes(type="log", tickvals=values, ticktext=text)
    return _layout(fig, "val ELBO against max β", "max β", TARGET_NAME)


def refit_figure(records: list[tuple[int, dict[str, Any]]]) -> go.Figure:
    """The results `tuner refit` stored with the study, one row per refitted trial."""
    columns = ["trial", "split", "NLL (nats)", "IWAE k", "images", "epochs", "likelihood", "bits/dim", "date"]

    def cell(record: dict[str, Any], key: str, digits: int) -> str:
        value = record.get(key)
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "—"

    rows = [
        [
            str(number),
            str(r.get("split", "test")),
            cell(r, "nll", 2),
            str(r.get("k", "—")),
            str(r.get("n_images", "—")),
            str(r.get("epochs", "—")),
            str(r.get("likelihood", "—")),
            cell(r, "bits_per_dim", 4),
            str(r.get("date", "—")),
        ]
        for number, r in records
    ]
    values = [[row[i] for row in rows] for i in range(len(columns))]
    table = go.Table(header={"values": columns}, cells={"values": values})
    return _layout(go.Figure(table), "Refits: test NLL of retrained trials (tuner refit)", "", "")
