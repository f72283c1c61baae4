"""Disentanglement scores of a VAE's codes against the data's known factors of variation.

Each score reads ``codes`` (N, D): the encoder's posterior means on the validation split, and
``factors`` (N, K): the integer factor values of the same images (see ``factors`` in
:mod:`tuner.vae.data`). They follow the published definitions, as
``disentanglement_lib`` (Locatello et al. 2019) computes them, in NumPy and scikit-learn:

* **MIG** (Chen et al. 2018): each code unit is discretized into 20 equal-width bins; for each
  factor, the gap between the two largest mutual informations with a unit, divided by the
  factor's entropy; averaged over factors. 1: every factor is held by one unit alone.
* **DCI** (Eastwood & Williams 2018): a random forest predicts each factor from all units; its
  impurity importances form the matrix R (D × K). *Disentanglement*: 1 − the entropy (base K)
  of each unit's row, weighted by the unit's share of the importance; *completeness*: 1 − the
  entropy (base D) of each factor's column, averaged; *informativeness*: the forests' accuracy
  on held-out codes, averaged over factors. ``disentanglement_lib`` uses gradient-boosted
  trees; a random forest is much faster (one forest per factor handles every class at once,
  boosting grows a tree per class per stage). Its trees weigh every unit at each split, as
  boosting does: with scikit-learn's default of a few units drawn at random, a unit that
  holds nothing is split on when it is the only one drawn and takes importance (an ideal
  3-unit code then scored 0.55 instead of 0.99). Leaves hold at least 1% of the codes, as
  boosting's shallow trees stay coarse: grown to single codes, the trees split on every unit's
  noise and spread the importance (four factors held by four units with noise of a third of
  a step: 0.81 instead of 0.97).
* **SAP** (Kumar et al. 2018): for each factor, the R² of a linear fit from each unit alone
  (the squared correlation, the continuous variant of ``disentanglement_lib``); the gap
  between the two best units, averaged over factors. A categorical factor (the sprites'
  shape) is read as its integer code.
* **Active units** (Burda et al. 2016): units whose mean varies across images,
  Var_x(E[z|x]) > 0.01; an inactive unit has collapsed to the prior.

Ideal codes (each factor in its own unit) score about 1 on MIG, SAP and DCI disentanglement and
completeness; codes that ignore the factors score about 0 (MIG keeps a small positive bias from
the finite sample). Factors that take one value only carry no information and are left out.

scikit-learn is the optional ``disentanglement`` extra, imported only when a score needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tuner.errors import ConfigError

METRICS = ("mig", "dci", "sap")
N_BINS = 20  # disentanglement_lib's discretization of the codes for MIG
ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016


def _sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(
            "disentanglement scores need scikit-learn; install the extra: pip install 'vae-beta-tuner[disentanglement]'"
        ) from None
    import sklearn.ensemble
    import sklearn.metrics

    return sklearn


def _checked(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(f"codes (N, D) and factors (N, K) of one N are needed, got {codes.shape} and {factors.shape}")
    # Factors that never change hold no information: MIG would divide by a zero entropy.
    varying = [k for k in range(factors.shape[1]) if len(np.unique(factors[:, k])) > 1]
    return codes, factors[:, varying].astype(np.int64)


def discretize(codes: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Each unit cut into ``n_bins`` equal-width bins over its own range (a constant unit: bin 0)."""
    binned = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        column = codes[:, j]
        edges = np.histogram_bin_edges(column, bins=n_bins)
        binned[:, j] = np.digitize(column, edges[1:-1])
    return binned


def mutual_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, K) mutual information in nats between each discretized unit and each factor."""
    metrics = _sklearn().metrics
    binned = discretize(codes)
    return np.array(
        [
            [metrics.mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
            for j in range(binned.shape[1])
        ]
    )


def mig(codes: np.ndarray, factors: np.ndarray) -> float:
    """Mutual information gap (Chen et al. 2018), in [0, 1]."""
    codes, factors = _checked(codes, factors)
    if factors.shape[1] == 0:
        return 0.0
    metrics = _sklearn().metrics
    info = mutual_information(codes, factors)
    entropy = np.array([metrics.mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])
    top = np.sort(info, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(factors.shape[1])
    return float(np.mean((top[0] - second) / entropy))


def sap(codes: np.ndarray, factors: np.ndarray) -> float:
    """Separated attribute predictability (Kumar et al. 2018), continuous variant, in [0, 1]."""
    codes, factors = _checked(codes, factors)
    if factors.shape[1] == 0:
        return 0.0
    centred = codes - codes.mean(axis=0)
    targets = factors - factors.mean(axis=0)
    covariance = centred.T @ targets / len(codes)
    variance = np.outer(centred.var(axis=0), targets.var(axis=0))
    r2 = np.divide(covariance**2, variance, out=np.zeros_like(covariance), where=variance > 0)
    top = np.sort(r2, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(factors.shape[1])
    return float(np.mean(top[0] - second))


@dataclass(frozen=True)
class DCI:
    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray  # (D, K)


def _entropy_complement(p: np.ndarray, base: int) -> np.ndarray:
    """1 − entropy (base ``base``) of each row of ``p`` (rows sum to 1)."""
    if base < 2:
        return np.ones(len(p))
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(base)
    return 1.0 - (-(p * logs).sum(axis=1))


def dci(codes: np.ndarray, factors: np.ndarray, *, n_trees: int = 32, test_fraction: float = 0.3, seed: int = 0) -> DCI:
    """DCI disentanglement, completeness and informativeness (Eastwood & Williams 2018), each in
    [0, 1], from one random forest per factor (``n_trees`` trees) trained on a seeded
    ``1 - test_fraction`` of the codes and scored on the rest."""
    codes, factors = _checked(codes, factors)
    n_codes, n_factors = codes.shape[1], factors.shape[1]
    if n_factors == 0:
        return DCI(0.0, 0.0, 0.0, np.zeros((n_codes, 0)))
    ensemble = _sklearn().ensemble
    order = np.random.default_rng(seed).permutation(len(codes))
    n_test = max(1, int(len(codes) * test_fraction))
    test, fit = order[:n_test], order[n_test:]
    importance = np.zeros((n_codes, n_factors))
    accuracy = np.zeros(n_factors)
    for k in range(n_factors):
        forest = ensemble.RandomForestClassifier(
            n_estimators=n_trees, max_features=None, min_samples_leaf=0.01, random_state=seed, n_jobs=1
        ).fit(codes[fit], factors[fit, k])
        importance[:, k] = np.abs(forest.feature_importances_)
        accuracy[k] = forest.score(codes[test], factors[test, k])
    total = importance.sum()
    if total <= 0:  # no split found: the codes say nothing of the factors
        return DCI(0.0, 0.0, float(accuracy.mean()), importance)
    unit_share = importance.sum(axis=1) / total
    rows = importance / np.maximum(importance.sum(axis=1, keepdims=True), 1e-12)
    disentanglement = float(np.sum(unit_share * _entropy_complement(rows, n_factors)))
    columns = (importance / np.maximum(importance.sum(axis=0, keepdims=True), 1e-12)).T
    completeness = float(np.mean(_entropy_complement(columns, n_codes)))
    return DCI(disentanglement, completeness, float(accuracy.mean()), importance)


def active_units(codes: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Units whose posterior mean varies across images more than ``threshold`` (Burda et al. 2016)."""
    return int(np.sum(np.var(np.asarray(codes, dtype=np.float64), axis=0) > threshold))


@dataclass(frozen=True)
class Scores:
    """Every score of one set of codes; :meth:`value` picks a study's objective."""

    mig: float
    dci_disentanglement: float
    dci_completeness: float
    dci_informativeness: float
    sap: float
    active_units: int
    n_images: int

    def value(self, metric: str) -> float:
        """The number a study maximises for ``metric`` (mig, dci: its disentanglement, sap)."""
        return {"mig": self.mig, "dci": self.dci_disentanglement, "sap": self.sap}[metric]

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mig": mig,
    "sap": sap,
    "dci": lambda codes, factors: dci(codes, factors).disentanglement,
}


def score(codes: np.ndarray, factors: np.ndarray) -> Scores:
    """All the scores of ``codes`` against ``factors``."""
    d = dci(codes, factors)
    return Scores(
        mig=mig(codes, factors),
        dci_disentanglement=d.disentanglement,
        dci_completeness=d.completeness,
        dci_informativeness=d.informativeness,
        sap=sap(codes, factors),
        active_units=active_units(codes),
        n_images=len(codes),
    )


def encoder_means(model: Any, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """(N, D) posterior means E[z|x] of ``images`` (float32 in [0, 1]), in batches."""
    from keras import ops

    means = [
        ops.convert_to_numpy(
            model.encode(ops.convert_to_tensor(np.asarray(images[start : start + batch_size], np.float32)))[0]
        )
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(means).astype(np.float64)


def latent_traversal(
    model: Any, image: np.ndarray, units: list[int] | None = None, steps: int = 9, span: float = 2.5
) -> np.ndarray:
    """A picture (uint8) of what each latent unit holds: one row per unit in ``units`` (all by
    default), each the decoding of ``image``'s posterior mean with that unit swept from
    ``-span`` to ``span`` (prior standard deviations) and the other units fixed."""
    from keras import ops

    from tuner.vae.pictures import image_grid

    mean = ops.convert_to_numpy(model.encode(ops.convert_to_tensor(np.asarray(image, np.float32)[None]))[0])[0]
    units = list(range(len(mean))) if units is None else units
    values = np.linspace(-span, span, steps)
    rows = []
    for unit in units:
        z = np.repeat(mean[None], steps, axis=0)
        z[:, unit] = values
        decoded = model.decode(ops.convert_to_tensor(z.astype(np.float32)))
        rows.append(ops.convert_to_numpy(decoded))
    return image_grid(rows)
