"""Pixel likelihoods p(x | z): what the decoder's output means, and which one fits the data.

* ``bernoulli``: binary pixels (or dynamically binarized ones). On grey pixels it is not a
  normalized density: its "NLL" holds an entropy floor (about 45 nats per MNIST image) and
  bounds no likelihood, so it is refused there (:func:`choose_likelihood`).
* ``continuous_bernoulli`` (Loaiza-Ganem & Cunningham 2019): a proper density on [0, 1],
  the Bernoulli cross-entropy minus the log normalizer log C(λ). Continuous: its NLL can be
  negative and is not comparable with discrete NLLs.
* ``discretized_logistic`` (Salimans et al. 2017, one component): 8-bit pixels as 256 bins of
  a logistic on [−1, 1]; the edge bins take the tails, so the 256 probabilities sum to 1 and
  the NLL is a true discrete likelihood, also reported in bits per dimension.

Each likelihood reads ``params_per_channel`` decoder outputs per image channel, laid out as
consecutive blocks of ``channels`` along the last axis (for the logistic: means, then
log-scales). All values are nats per image, float32.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from keras import ops

from tuner.errors import DataError

NAMES = ("bernoulli", "continuous_bernoulli", "discretized_logistic")
# The discretized logistic's log-scales are floored here (PixelCNN++ does the same): narrower
# bins than exp(−7) never change a probability but make gradients explode.
MIN_LOG_SCALE = -7.0


def _per_image(values: Any) -> Any:
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def bernoulli_nll(x: Any, logits: Any) -> Any:
    """−log p(x | logits) summed over pixels, in nats per image (x in [0, 1])."""
    return _per_image(ops.softplus(logits) - x * logits)


def continuous_bernoulli_log_norm(logits: Any) -> Any:
    """log C(λ) with λ = sigmoid(logits): C = logits / tanh(logits / 2), 2 at logits = 0."""
    small = ops.abs(logits) < 1e-3
    safe = ops.where(small, ops.ones_like(logits), logits)
    exact = ops.log(ops.abs(safe)) - ops.log(ops.abs(ops.tanh(safe / 2.0)))
    return ops.where(small, math.log(2.0) + ops.square(logits) / 12.0, exact)


def continuous_bernoulli_nll(x: Any, logits: Any) -> Any:
    """−log p(x | logits) of the continuous Bernoulli, nats per image (a density: may be < 0)."""
    return _per_image(ops.softplus(logits) - x * logits - continuous_bernoulli_log_norm(logits))


def discretized_logistic_log_probs(x: Any, mean: Any, log_scale: Any) -> Any:
    """log P(x) per pixel for x in {0, 1/255, …, 1}, with a logistic of ``mean`` (on the
    [−1, 1] scale) and ``log_scale``; the first and last bins take the tails."""
    y = 2.0 * x - 1.0
    log_scale = ops.maximum(log_scale, MIN_LOG_SCALE)
    inv_s = ops.exp(-log_scale)
    centered = y - mean
    plus_in = inv_s * (centered + 1.0 / 255.0)
    min_in = inv_s * (centered - 1.0 / 255.0)
    log_cdf_plus = plus_in - ops.softplus(plus_in)  # log sigmoid(plus_in), for x = 0
    log_one_minus_cdf_min = -ops.softplus(min_in)  # log(1 − sigmoid(min_in)), for x = 1
    cdf_delta = ops.sigmoid(plus_in) - ops.sigmoid(min_in)
    mid_in = inv_s * centered
    # Where the bin's mass underflows in float32, the density at its centre times its width.
    log_pdf_mid = mid_in - log_scale - 2.0 * ops.softplus(mid_in) - math.log(127.5)
    log_delta = ops.where(cdf_delta > 1e-5, ops.log(ops.maximum(cdf_delta, 1e-12)), log_pdf_mid)
    return ops.where(y < -0.999, log_cdf_plus, ops.where(y > 0.999, log_one_minus_cdf_min, log_delta))


class Likelihood:
    """How to score images against the decoder's output, and how to show its mean."""

    name: ClassVar[str] = ""
    params_per_channel: ClassVar[int] = 1
    discrete_8bit: ClassVar[bool] = False  # also reported in bits per dimension

    def nll(self, x: Any, params: Any) -> Any:
        raise NotImplementedError

    def mean(self, params: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


class Bernoulli(Likelihood):
    name = "bernoulli"

    def nll(self, x: Any, params: Any) -> Any:
        return bernoulli_nll(x, params)

    def mean(self, params: Any) -> Any:
        return ops.sigmoid(params)


class ContinuousBernoulli(Likelihood):
    name = "continuous_bernoulli"

    def nll(self, x: Any, params: Any) -> Any:
        return continuous_bernoulli_nll(x, params)

    def mean(self, params: Any) -> Any:
        # E[x] = λ/(2λ−1) + 1/(2 atanh(1−2λ)) = 1/(1−e^{−l}) − 1/l, and 1/2 at l = 0.
        small = ops.abs(params) < 1e-3
        safe = ops.where(small, ops.ones_like(params), params)
        exact = 1.0 / (1.0 - ops.exp(-safe)) - 1.0 / safe
        return ops.where(small, 0.5 + params / 12.0, exact)


class DiscretizedLogistic(Likelihood):
    name = "discretized_logistic"
    params_per_channel = 2
    discrete_8bit = True

    def nll(self, x: Any, params: Any) -> Any:
        mean, log_scale = ops.split(params, 2, axis=-1)
        return -_per_image(discretized_logistic_log_probs(x, mean, log_scale))

    def mean(self, params: Any) -> Any:
        mean, _ = ops.split(params, 2, axis=-1)
        return ops.clip((mean + 1.0) / 2.0, 0.0, 1.0)


_CLASSES: dict[str, type[Likelihood]] = {cls.name: cls for cls in (Bernoulli, ContinuousBernoulli, DiscretizedLogistic)}


def get_likelihood(name: str) -> Likelihood:
    """The likelihood called ``name`` (one of :data:`NAMES`)."""
    if name not in _CLASSES:
        raise ValueError(f"Argument `likelihood` must be one of {list(NAMES)}. Received: likelihood={name!r}")
    return _CLASSES[name]()


def bits_per_dim(nll_nats: float, n_dims: int) -> float:
    """Nats per image → bits per dimension (pixel × channel)."""
    return nll_nats / (n_dims * math.log(2.0))


def _is_binary(images: np.ndarray) -> bool:
    return bool(np.all((images == 0) | (images == 1)))


def _is_8bit(images: np.ndarray) -> bool:
    scaled = images * 255.0
    return bool(np.all(np.abs(scaled - np.round(scaled)) < 1e-3))


def choose_likelihood(requested: str, images: np.ndarray, dynamic_binarization: bool) -> str:
    """The likelihood to train with: ``requested``, or for ``auto`` the one the data calls for
    (binary or dynamically binarized → bernoulli, 8-bit → discretized_logistic, other grey
    levels → continuous_bernoulli).

    Raises:
        DataError: ``bernoulli`` asked for on images that are neither binary nor dynamically
            binarized (its NLL would bound nothing).
    """
    binary = dynamic_binarization or _is_binary(images)
    if requested == "auto":
        if binary:
            return "bernoulli"
        return "discretized_logistic" if _is_8bit(images) else "continuous_bernoulli"
    if requested == "bernoulli" and not binary:
        fix = "model.likelihood: discretized_logistic" if _is_8bit(images) else "model.likelihood: continuous_bernoulli"
        raise DataError(
            "model.likelihood: bernoulli needs binary pixels, but the training images have grey levels; "
            f"set data.dynamic_binarization: true, or {fix}"
        )
    if requested == "discretized_logistic" and not _is_8bit(images):
        raise DataError(
            "model.likelihood: discretized_logistic needs 8-bit pixels (multiples of 1/255); "
            "use model.likelihood: continuous_bernoulli"
        )
    return requested
