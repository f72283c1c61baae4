"""What to plot, computed from a study without drawing anything (tested without a browser).

Everything here reads only what trials stored (parameters, user attributes, artifacts): no
model is built and no backend imported (checked by an import contract). The best trial's views,
which rebuild its model, are in :mod:`tuner.report.best_trial`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.config import CONTROLLERS
from tuner.search.records import (
    BASELINE_ATTR,
    BUDGET_ATTR,
    FAIL_ATTR,
    PRUNED_AT_ATTR,
    RECON_ATTR,
    SCHEDULE_ATTR,
    STEPS_ATTR,
    STUDY_CONFIG_ATTR,
    Confirmed,
    confirmed_ranking,
    curves,
    finished_count,
    real_trials,
    refit_record,
    state_counts,
    stored_config,
)
from tuner.storage import ArtifactStore
from tuner.vae.schedules import BetaController, deserialize

_logger = optuna.logging.get_logger("tuner.report")

TEST_NLL_ATTR = "test_nll"  # nats per image, on the test split; only a refit trial stores it
MIN_CONTOUR_POINTS = 10  # fewer completed trials: a contour's ridges are interpolation artefacts
# One colour per trial, the same in every figure of a page (Plotly's "Dark24" without near-greys).
PALETTE = [
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86", "#EB663B",
    "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16",
    "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038", "#22A3A6",
]  # fmt: skip


def trial_color(number: int) -> str:
    """The colour of trial ``number`` in every figure (curves, β(t), landscape)."""
    return PALETTE[number % len(PALETTE)]


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (foreign or malformed attributes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def safe_curves(trial: FrozenTrial) -> list[dict[str, Any]]:
    """The trial's per-epoch rows that carry a numeric epoch and val ELBO; anything else
    (attributes written by another tool, a half-written row) is skipped with a warning."""
    try:
        rows: list[Any] = list(curves(trial))
    except Exception as exc:  # noqa: BLE001 - a foreign attribute must not break a view
        _logger.warning(f"trial {trial.number}: unreadable curves ({exc}); skipped")
        return []
    good = [
        r for r in rows if isinstance(r, dict) and _number(r.get("epoch")) and _number(r.get("val_elbo")) is not None
    ]
    if len(good) < len(rows):
        _logger.warning(f"trial {trial.number}: {len(rows) - len(good)} malformed curve rows skipped")
    return good


def _config_section(trial: FrozenTrial, section: str) -> dict[str, Any]:
    config = stored_config(trial)
    value = config.get(section) if isinstance(config, dict) else None
    return value if isinstance(value, dict) else {}


def is_multi_objective(study: optuna.Study) -> bool:
    """A rate–distortion study (two values: distortion, then rate), the multi-objective kind
    the report's Pareto and rate–distortion views are drawn for. A study of two other values
    (``elbo_and_disentanglement``) is not: its scores have their own sections."""
    return len(study.directions) > 1 and (study.metric_names or ["distortion", "rate"]) == ["distortion", "rate"]


class TrialCurve(NamedTuple):
    number: int
    state: str
    epochs: list[int]
    val_elbo: list[float]
    pruned_at: int | None


def elbo_curves(study: optuna.Study) -> list[TrialCurve]:
    """Validation ELBO per epoch of every trial that reported at least one epoch."""
    result = []
    for trial in real_trials(study):
        rows = safe_curves(trial)
        if rows:
            at = _number(trial.user_attrs.get(PRUNED_AT_ATTR)) if trial.state == TrialState.PRUNED else None
            pruned = int(at) if at is not None else None
            result.append(
                TrialCurve(
                    trial.number,
                    trial.state.name.lower(),
                    [int(r["epoch"]) for r in rows],
                    [float(r["val_elbo"]) for r in rows],
                    pruned,
                )
            )
    return result


# Figures of one line per trial (the per-epoch curves, Optuna's parallel coordinates) draw at
# most this many trials: past a few hundred lines they are a solid band, and each line costs the
# page 0.5-2 KB and the report a few milliseconds (10,000 lines: 5-20 MB, 15 s; scale.py).
LINES_DRAWN = 200
LINES_BEST = 50  # of them, the best trials; the rest a sample evenly spread over trial numbers


class Drawn(NamedTuple):
    numbers: set[int]  # the trials to draw
    total: int  # the trials there were
    best: int  # how many of the drawn are the study's best (0 when every trial is drawn)


def thinned(study: optuna.Study, numbers: list[int], limit: int = LINES_DRAWN, best: int = LINES_BEST) -> Drawn:
    """At most ``limit`` of the trials ``numbers`` (in trial order): the ``best`` completed
    ones (by :func:`ranked_trials`), then others evenly spread over trial numbers, so that a
    figure still shows how the search moved; all of them when there are not more."""
    if len(numbers) <= limit:
        return Drawn(set(numbers), len(numbers), 0)
    top = {t.number for t in ranked_trials(study, min(best, limit))} & set(numbers)
    rest = [n for n in numbers if n not in top]
    room = limit - len(top)
    return Drawn(top | {rest[i * len(rest) // room] for i in range(room)}, len(numbers), len(top))


# The dashboard keeps each view as study attributes of 2 KB, and its study page scans all of
# them once per trial: 10,000 points in the rate-distortion plane and the β landscape made
# 1,000 such attributes (15 s to save, most of the page's 20 s). Its views draw at most these.
POINTS_SHOWN = 1000
POINTS_BEST = 200


def fewer_points(study: optuna.Study, rd: RateDistortion) -> tuple[RateDistortion, Drawn]:
    """The rate–distortion plane thinned by :func:`thinned` to :data:`POINTS_SHOWN` points,
    the Pareto front always kept."""
    drawn = thinned(study, [p.number for p in rd.points], POINTS_SHOWN, POINTS_BEST)
    keep = drawn.numbers | set(rd.pareto)
    points = [p for p in rd.points if p.number in keep]
    return RateDistortion(points, rd.pareto, rd.elbo_levels), drawn._replace(numbers=keep)


def fewer_landscape_points(study: optuna.Study, points: list[LandscapePoint]) -> tuple[list[LandscapePoint], Drawn]:
    """The β landscape thinned by :func:`thinned` to :data:`POINTS_SHOWN` points."""
    drawn = thinned(study, [p.number for p in points], POINTS_SHOWN, POINTS_BEST)
    return [p for p in points if p.number in drawn.numbers], drawn


def drawn_elbo_curves(study: optuna.Study, limit: int = LINES_DRAWN) -> tuple[list[TrialCurve], Drawn]:
    """:func:`elbo_curves`, thinned to ``limit`` trials by :func:`thinned`."""
    curves = elbo_curves(study)
    drawn = thinned(study, [c.number for c in curves], limit)
    return [c for c in curves if c.number in drawn.numbers], drawn


class FailedTrial(NamedTuple):
    number: int
    reason: str
    params: dict[str, Any]


def failed_trials(study: optuna.Study) -> list[FailedTrial]:
    return [
        FailedTrial(t.number, t.user_attrs.get(FAIL_ATTR, "unknown"), t.params)
        for t in real_trials(study)
        if t.state == TrialState.FAIL
    ]


def ranked_trials(study: optuna.Study, n: int | None = None) -> list[FrozenTrial]:
    """Completed trials, best first (by val ELBO; for rate–distortion, Pareto front first)."""
    done = [t for t in real_trials(study) if t.state == TrialState.COMPLETE and t.values]
    if is_multi_objective(study):
        front = {t.number for t in study.best_trials}
        ranked = sorted(done, key=lambda t: (t.number not in front, sum(t.values)))
    else:
        reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
        ranked = sorted(done, key=lambda t: t.values[0], reverse=reverse)
    return ranked[:n] if n else ranked


class BetaCurve(NamedTuple):
    number: int
    steps: np.ndarray
    beta: np.ndarray
    steps_per_epoch: int


def beta_curves(study: optuna.Study, top: int = 5, points: int = 400) -> list[BetaCurve]:
    """β at each step of the top trials, evaluated from their own stored schedules (a β
    controller's: as recorded at the end of each epoch)."""
    result = []
    for trial in ranked_trials(study, top):
        curve = beta_curve(trial, points)
        if curve is not None:
            result.append(curve)
    return result


def beta_curve(trial: FrozenTrial, points: int = 400) -> BetaCurve | None:
    """β at each step of one trial, from its stored schedule; None (with a warning when
    the attributes are there but unreadable) when it cannot be rebuilt. A β controller's β
    depends on its training: its curve is the β recorded at each epoch's end (``beta_end``),
    from the β it starts with, over the epochs trained so far."""
    spec, spe = trial.user_attrs.get(SCHEDULE_ATTR), _number(trial.user_attrs.get(STEPS_ATTR))
    epochs = _number(_config_section(trial, "training").get("epochs"))
    if not spec or not spe or not epochs:
        return None
    total = int(spe * epochs)
    steps = np.unique(np.linspace(0, total, min(points, total + 1)).astype(int))
    try:
        schedule = deserialize(spec)
        if isinstance(schedule, BetaController):
            return _recorded_beta_curve(trial, schedule, int(spe))
        beta = np.asarray(schedule.values(steps), dtype=float)
    except Exception as exc:  # noqa: BLE001 - a foreign schedule attribute
        _logger.warning(f"trial {trial.number}: unreadable β schedule ({exc}); skipped")
        return None
    return BetaCurve(trial.number, steps, beta, int(spe))


def _recorded_beta_curve(trial: FrozenTrial, controller: BetaController, spe: int) -> BetaCurve | None:
    """A controller's β(t): its starting β, then each recorded epoch's end-of-epoch β."""
    ends = [(int(row["epoch"]) * spe, _number(row.get("beta_end"))) for row in safe_curves(trial)]
    known = [(step, beta) for step, beta in ends if beta is not None]
    if not known:
        return None
    steps = np.asarray([0, *(step for step, _ in known)], dtype=int)
    beta = np.asarray([controller.initial_state()[0], *(b for _, b in known)], dtype=float)
    return BetaCurve(trial.number, steps, beta, spe)


class RatePoint(NamedTuple):
    number: int
    rate: float  # val KL, nats per image
    distortion: float  # val reconstruction NLL, nats per image
    max_beta: float | None
    state: str


@dataclass
class RateDistortion:
    points: list[RatePoint]
    pareto: list[int] = field(default_factory=list)  # trial numbers on the front
    elbo_levels: list[float] = field(default_factory=list)  # lines of equal ELBO: rate + distortion = -level


def rate_distortion(study: optuna.Study, n_levels: int = 5) -> RateDistortion:
    points = []
    for trial in real_trials(study):
        rows = safe_curves(trial)
        if rows and trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
            rate, dist = _number(rows[-1].get("val_kl")), _number(rows[-1].get("val_recon"))
            if rate is None or dist is None:
                continue
            points.append(RatePoint(trial.number, rate, dist, max_beta(trial), trial.state.name.lower()))
    pareto = _pareto_front([(p.rate, p.distortion, p.number) for p in points if p.state == "complete"])
    totals = sorted(p.rate + p.distortion for p in points)
    levels = []
    if totals:
        lo, hi = totals[0], totals[min(len(totals) - 1, max(0, len(totals) // 2))]
        levels = [-float(v) for v in np.linspace(lo, max(hi, lo + 1.0), n_levels)]
    return RateDistortion(points, pareto, levels)


def max_beta(trial: FrozenTrial) -> float | None:
    """The trial's max β: its sampled parameter, else its stored schedule config."""
    value = trial.params.get("max_beta", _config_section(trial, "schedule").get("max_beta"))
    return _number(value)


def _pareto_front(items: list[tuple[float, float, int]]) -> list[int]:
    """Trials not dominated in (rate, distortion), both minimised."""
    front = []
    for rate, dist, number in items:
        dominated = any(r <= rate and d <= dist and (r < rate or d < dist) for r, d, _ in items)
        if not dominated:
            front.append(number)
    return sorted(front)


class TableRow(NamedTuple):
    number: int
    values: list[float]
    params: dict[str, Any]
    duration_s: float | None


def top_table(study: optuna.Study, n: int = 10) -> list[TableRow]:
    return [
        TableRow(t.number, list(t.values or []), t.params, t.duration.total_seconds() if t.duration else None)
        for t in ranked_trials(study, n)
    ]


def metadata(study: optuna.Study, storage_label: str) -> dict[str, Any]:
    """Study facts for the report header; ``storage_label`` must already be redacted."""
    trials = real_trials(study)
    counts = state_counts(trials)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    # The budget in force at the latest run (an n_trials override included), else the file's.
    budget = study.user_attrs.get(BUDGET_ATTR) or (study.user_attrs.get(STUDY_CONFIG_ATTR) or {}).get("budget", {}).get(
        "n_trials"
    )
    finished = finished_count(counts)
    return {
        "study": study.study_name,
        "storage": storage_label,
        "objective": "rate–distortion (multi-objective)" if is_multi_objective(study) else "maximise val ELBO",
        "first trial started": min(starts).isoformat(timespec="seconds") if starts else "—",
        "last trial finished": max(ends).isoformat(timespec="seconds") if ends else "—",
        "trials by state": ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none",
        "budget used": f"{finished} / {budget}" if budget else str(finished),
        "report written": dt.datetime.now().isoformat(timespec="seconds"),
    }


@dataclass
class Summary:
    """The answer first: which trial won, with what, and what the search bought (nats per image)."""

    best_number: int
    best_value: float  # val ELBO, nats per image (higher is better)
    test_nll: float | None  # nats per image on the test split, where the trial stored one
    schedule: BetaCurve | None
    schedule_text: str  # e.g. "linear to β = 0.92 over 5 of 6 epochs"
    latent_dim: int | None
    learning_rate: float | None
    baseline_number: int | None
    baseline_value: float | None
    n_pruned: int
    epochs_saved: int  # epochs the pruned trials did not train
    epochs_trained: int
    diagnosis: str
    noise: str | None = None  # with confirm:, whether the top configurations are told apart

    @property
    def gain(self) -> float | None:
        """Best minus baseline val ELBO, nats per image (positive: tuning helped)."""
        if self.baseline_value is None:
            return None
        return self.best_value - self.baseline_value


def quick_diagnosis(recon: float, kl: float) -> str:
    """A one-line reading from the last epoch's rate and distortion alone (no model needed);
    the best-trial views refine it with active units when weights are kept."""
    if kl < 1.0:
        return f"Posterior collapse likely: the rate is {kl:.1f} nats, so the decoder ignores z. Lower max_beta."
    if kl > recon:
        return f"Under-regularised: rate {kl:.1f} nats exceeds distortion {recon:.1f} nats. Raise max_beta."
    if kl < 0.05 * recon:
        return f"Possibly over-regularised: rate {kl:.1f} nats is small next to distortion {recon:.1f} nats."
    return f"Healthy balance: rate {kl:.1f} nats, distortion {recon:.1f} nats."


def _controller_text(trial: FrozenTrial, sched: dict[str, Any]) -> str:
    """A controlled trial by its target and where its β ended, e.g. "control: KL held at 15
    nats per image, β in [0, 10], ended at β = 0.42" (β itself was never a chosen number)."""
    name = str(sched["name"])
    if name == "control":
        target = _number(trial.params.get("target_kl", sched.get("target_kl")))
        goal = f"KL held at {target:.4g} nats per image" if target is not None else "KL held at a target"
    else:
        target = _number(trial.params.get("target_distortion", sched.get("target_distortion")))
        per = sched.get("distortion_per", "image")
        goal = f"reconstruction NLL target {target:.4g} nats per {per}" if target is not None else "a distortion target"
    low, high = _number(sched.get("min_beta", 0.0)) or 0.0, max_beta(trial)
    parts = [f"{name}: {goal}"]
    if high is not None:
        parts.append(f"β in [{low:.3g}, {high:.3g}]")
    rows = curves(trial)
    if rows and _number(rows[-1].get("beta_end")) is not None:
        parts.append(f"ended at β = {rows[-1]['beta_end']:.3g}")
    return ", ".join(parts)


def _schedule_text(trial: FrozenTrial) -> str:
    sched, training = _config_section(trial, "schedule"), _config_section(trial, "training")
    if sched.get("name") in CONTROLLERS:
        return _controller_text(trial, sched)
    beta = max_beta(trial)
    parts = [str(sched.get("name", "schedule"))]
    if beta is not None:
        parts.append(f"to β = {beta:.3g}")
    anneal = _number(trial.params.get("anneal_epochs", sched.get("anneal_epochs")))
    epochs = _number(training.get("epochs"))
    if anneal is not None and epochs:
        parts.append(f"over {int(anneal)} of {int(epochs)} epochs")
    return " ".join(parts)


def _refit_nll(study: optuna.Study, trial: FrozenTrial) -> float | None:
    """The test NLL that `tuner refit` stored for ``trial`` (or an older trial attribute)."""
    record = refit_record(study, trial.number)
    return float(record["nll"]) if record else _number(trial.user_attrs.get(TEST_NLL_ATTR))


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The baseline (the common default, enqueued first), or None when it did not complete."""
    for trial in real_trials(study):
        if trial.user_attrs.get(BASELINE_ATTR) is True and trial.state == TrialState.COMPLETE and trial.values:
            return trial
    return None


def reconstruction_pictures(study: optuna.Study, store: ArtifactStore | None, numbers: list[int]) -> dict[int, bytes]:
    """The PNG bytes of the reconstruction picture each of trials ``numbers`` saved, where it
    did (a missing or unreadable artifact is left out)."""
    if store is None:
        return {}
    wanted = set(numbers)
    pictures = {}
    for trial in study.get_trials(deepcopy=False):
        artifact_id = trial.user_attrs.get(RECON_ATTR)
        if trial.number in wanted and isinstance(artifact_id, str):
            try:
                with store.open_reader(artifact_id) as reader:
                    pictures[trial.number] = reader.read()
            except Exception as exc:  # noqa: BLE001 - a removed or foreign artifact
                _logger.warning(f"trial {trial.number}: reconstruction picture not readable ({exc})")
    return pictures


def noise_note(confirmed: list[Confirmed]) -> str | None:
    """Whether the two best configurations (re-trained with more seeds) are told apart: their
    means must differ by more than the larger spread of their draws."""
    if len(confirmed) < 2:
        return None
    first, second = confirmed[0], confirmed[1]
    gap, spread = abs(first.mean - second.mean), max(first.std, second.std)
    draws = f"{len(first.values)} and {len(second.values)} seeds"
    if gap <= spread:
        return (
            f"Within noise: trials {first.number} and {second.number} differ by {gap:.2f} nats in mean val ELBO "
            f"({draws}), less than the spread of their seeds ({spread:.2f} nats); either will do."
        )
    return f"Trial {first.number} beats trial {second.number} by {gap:.2f} nats in mean val ELBO ({draws}; spread {spread:.2f})."


def summary(study: optuna.Study) -> Summary | None:
    """The report's opening facts, or None before a single-objective study has a completed trial."""
    if is_multi_objective(study):
        return None
    ranked = ranked_trials(study, 1)
    if not ranked:
        return None
    best = ranked[0]
    confirmed = confirmed_ranking(study)
    if confirmed:  # re-trained with more seeds: the best mean wins, as in `tuner export`
        best = next(t for t in study.get_trials(deepcopy=False) if t.number == confirmed[0].number)
    base = baseline_trial(study)
    trials = real_trials(study)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    saved = 0
    for t in pruned:
        epochs = _number(_config_section(t, "training").get("epochs"))
        stopped = _number(t.user_attrs.get(PRUNED_AT_ATTR)) or float(len(safe_curves(t)))
        if epochs:
            saved += max(0, int(epochs - stopped))
    rows = safe_curves(best)
    recon = _number(rows[-1].get("val_recon")) if rows else None
    kl = _number(rows[-1].get("val_kl")) if rows else None
    latent = _number(best.params.get("latent_dim", _config_section(best, "model").get("latent_dim")))
    lr = _number(best.params.get("learning_rate", _config_section(best, "training").get("learning_rate")))
    return Summary(
        best_number=best.number,
        best_value=float(best.values[0]),
        test_nll=_refit_nll(study, best),
        schedule=beta_curve(best, 120),
        schedule_text=_schedule_text(best),
        latent_dim=int(latent) if latent is not None else None,
        learning_rate=lr,
        baseline_number=base.number if base else None,
        baseline_value=float(base.values[0]) if base else None,
        n_pruned=len(pruned),
        epochs_saved=saved,
        epochs_trained=sum(len(safe_curves(t)) for t in trials),
        diagnosis=quick_diagnosis(recon, kl) if recon is not None and kl is not None else "No curves stored.",
        noise=noise_note(confirmed),
    )


class LandscapePoint(NamedTuple):
    number: int
    max_beta: float
    anneal_epochs: float | None
    value: float  # val ELBO, nats per image
    rate: float | None
    distortion: float | None


def beta_landscape(study: optuna.Study) -> list[LandscapePoint]:
    """Every completed trial as (max β, annealing length, val ELBO), with its last rate and
    distortion, so a reader sees why a β wins: rate bought versus distortion paid."""
    if is_multi_objective(study):
        return []
    points = []
    for t in ranked_trials(study):
        beta = max_beta(t)
        if beta is None:
            continue
        anneal = _number(t.params.get("anneal_epochs", _config_section(t, "schedule").get("anneal_epochs")))
        rows = safe_curves(t)
        last = rows[-1] if rows else {}
        points.append(
            LandscapePoint(
                t.number, beta, anneal, float(t.values[0]), _number(last.get("val_kl")), _number(last.get("val_recon"))
            )
        )
    return points


class LatestRates(NamedTuple):
    number: int
    epochs: list[int]
    rate: list[float]  # val KL per epoch, nats
    distortion: list[float]  # val reconstruction NLL per epoch, nats


def rate_distortion_curves(study: optuna.Study, top: int = 5) -> list[LatestRates]:
    """Rate and distortion per epoch of the top trials (what the dashboard's own
    intermediate-values panel, which holds val ELBO only, cannot show)."""
    result = []
    for t in ranked_trials(study, top):
        rows = [r for r in safe_curves(t) if _number(r.get("val_kl")) is not None and _number(r.get("val_recon"))]
        if rows:
            result.append(
                LatestRates(
                    t.number,
                    [int(r["epoch"]) for r in rows],
                    [float(r["val_kl"]) for r in rows],
                    [float(r["val_recon"]) for r in rows],
                )
            )
    return result
