"""Drawing functions: each takes the output of a ``data.py`` function and returns a figure."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from tuner.report.data import BestViews, BetaCurve, RateDistortion, TrialCurve
from tuner.vae.pictures import image_grid

STATE_STYLE = {"complete": "solid", "pruned": "dot", "running": "dash", "fail": "dashdot"}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=420)
    return fig


def elbo_curves_figure(curves: list[TrialCurve]) -> go.Figure:
    fig = go.Figure()
    for c in curves:
        fig.add_trace(
            go.Scatter(
                x=c.epochs,
                y=c.val_elbo,
                mode="lines",
                name=f"trial {c.number} ({c.state})",
                line={"dash": STATE_STYLE.get(c.state, "solid"), "width": 1.5},
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
    return _layout(fig, "Validation ELBO per epoch (β = 1, nats per image)", "epoch", "val ELBO")


def beta_figure(curves: list[BetaCurve]) -> go.Figure:
    fig = go.Figure()
    for c in curves:
        fig.add_trace(go.Scatter(x=c.steps / c.steps_per_epoch, y=c.beta, mode="lines", name=f"trial {c.number}"))
    return _layout(fig, "β(t) of the top trials, from their own schedules", "epoch", "β")


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
            text=[f"trial {p.number} ({p.state}), max_beta={b:.3g}" for p, b in zip(rd.points, betas, strict=False)],
            marker={
                "color": np.log10(np.maximum(np.array(betas, dtype=float), 1e-6)),
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "log10 max_beta"},
                "size": 9,
            },
        )
    )
    front = sorted((p for p in rd.points if p.number in rd.pareto), key=lambda p: p.rate)
    if front:
        fig.add_trace(
            go.Scatter(
                x=[p.rate for p in front],
                y=[p.distortion for p in front],
                mode="lines+markers",
                name="Pareto front",
                line={"color": "crimson"},
            )
        )
    if len(rates):
        dist = np.array([p.distortion for p in rd.points], dtype=float)
        fig.update_yaxes(range=[float(dist.min()) * 0.95 - 1, float(dist.max()) * 1.05 + 1])
    return _layout(
        fig, "Rate–distortion plane (dotted: lines of equal ELBO)", "rate: KL (nats)", "distortion: recon NLL (nats)"
    )


def picture_figure(pixels: np.ndarray, title: str) -> go.Figure:
    """A uint8 picture, (H, W) grayscale or (H, W, 3) RGB, as a figure without axes."""
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


def kl_per_dim_figure(best: BestViews) -> go.Figure:
    order = np.argsort(best.kl_per_dim)[::-1]
    fig = go.Figure(go.Bar(x=[f"z{i}" for i in order], y=[best.kl_per_dim[i] for i in order]))
    return _layout(
        fig,
        f"KL per latent dimension, trial {best.number}: {best.active_units} of {best.latent_dim} units active",
        "latent dimension (sorted)",
        "KL (nats)",
    )
