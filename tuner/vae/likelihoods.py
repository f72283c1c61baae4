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
* ``discretized_logistic_rgb``: the same with a pixel's colour channels coupled as in
  PixelCNN++ (green's mean depends on red, blue's on both): what ``auto`` picks for 8-bit RGB.
* ``pixelcnn_logistic`` and ``pixelcnn_logistic_rgb``: the two above, with each pixel's
  parameters corrected from the pixels before it by a small autoregressive head
  (:mod:`tuner.vae.pixel_head`, PixelVAE). Never picked by ``auto``: they reach PNG's bits per
  dimension on photos, but the latent then carries little and reconstructions are poor.

Each likelihood reads ``params_per_channel`` decoder outputs per image channel, laid out as
consecutive blocks of ``channels`` along the last axis (for the logistic: means, then
log-scales). All values are nats per image, float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
from keras import ops

from tuner.errors import DataError

# The discretized logistic's log-scales are floored here (PixelCNN++ does the same): narrower
# bins than exp(−7) never change a probability but make gradients explode.
MIN_LOG_SCALE = -7.0
# 1/255 as HI + LO, HI with 12 significant bits: a level's j·HI (|j| ≤ 255) is exact in float32.
_INV_255_HI = 2056.0 / 2.0**19
_INV_255_LO = 1.0 / 255.0 - _INV_255_HI


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


def _log_bin_factor(log_scale: Any) -> Any:
    """log(1 − e^{−Δ}) for the bin width Δ = (2/255)/s on the logistic's own scale: expm1
    keeps it exact, and below Δ = 1e-3 the series log Δ − Δ/2 (error Δ²/24, and log Δ taken
    from ``log_scale`` itself) keeps it exact where Δ underflows."""
    log_delta = math.log(2.0 / 255.0) - log_scale
    delta = ops.exp(log_delta)
    small = delta < 1e-3
    safe = ops.where(small, ops.ones_like(delta), delta)  # no log(0) even in the unused branch
    return ops.where(small, log_delta - 0.5 * delta, ops.log(-ops.expm1(-safe)))


def discretized_logistic_log_probs(x: Any, mean: Any, log_scale: Any) -> Any:
    """log P(x) per pixel for x in {0, 1/255, …, 1}, with a logistic of ``mean`` (on the
    [−1, 1] scale) and ``log_scale``; the first and last bins take the tails.

    An inner bin's mass is σ(a) − σ(b) with a, b = (y − mean ± 1/255)/s. In float32 that
    difference cancels (two numbers near 1 above the mean, or two near 0 in a narrow bin), so
    it is taken in log space from the identity σ(a) − σ(b) = σ(a)·σ(−b)·(1 − e^{−(a − b)}):
    log P = −softplus(−a) − softplus(b) + log(1 − e^{−Δ}), Δ = a − b = 2/(255 s). Every term
    is computed without cancellation, on either side of the mean and in the far tails alike,
    so no density-at-the-centre approximation is needed: float32 agrees with a float64
    reference to 3e-6 nats where P > 1e-5, and to 3e-4 down to log P ≈ −2,000
    (tests/test_numerics.py).
    """
    # y = j/255 from the pixel's level j = 2·level − 255, and y − mean without rounding y first:
    # 2·x − 1 (or j/255) carries a float32 rounding of up to 6e-8, which 1/s (up to e^7) turns
    # into 7e-5 nats. j·HI is exact and, near the mean, so is j·HI − mean (Sterbenz).
    j = 2.0 * ops.round(x * 255.0) - 255.0
    log_scale = ops.maximum(log_scale, MIN_LOG_SCALE)
    inv_s = ops.exp(-log_scale)
    centered = (j * _INV_255_HI - mean) + j * _INV_255_LO
    plus_in = inv_s * (centered + 1.0 / 255.0)
    min_in = inv_s * (centered - 1.0 / 255.0)
    log_cdf_plus = plus_in - ops.softplus(plus_in)  # log sigmoid(plus_in), for x = 0
    log_one_minus_cdf_min = -ops.softplus(min_in)  # log(1 − sigmoid(min_in)), for x = 1
    # Δ from the scale alone (not plus_in − min_in, which would cancel far from the mean).
    log_bin = -ops.softplus(-plus_in) - ops.softplus(min_in) + _log_bin_factor(log_scale)
    return ops.where(j < -254.5, log_cdf_plus, ops.where(j > 254.5, log_one_minus_cdf_min, log_bin))


class Likelihood:
    """How to score images against the decoder's output, and how to show its mean."""

    name: ClassVar[str] = ""
    params_per_channel: ClassVar[int] = 1
    discrete_8bit: ClassVar[bool] = False  # also reported in bits per dimension
    # The decoder's parameters pass through tuner.vae.pixel_head, which reads the pixels before
    # each one: scoring takes the image, pictures decode pixel by pixel.
    autoregressive: ClassVar[bool] = False

    def nll(self, x: Any, params: Any) -> Any:
        raise NotImplementedError

    def mean(self, params: Any, xp: Any = ops) -> Any:
        """The images' expected pixels in [0, 1]; ``xp``: ``keras.ops`` or NumPy (the pixel head
        decodes one pixel at a time in NumPy, :func:`tuner.vae.pixel_head.decode_greedy`)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


class Bernoulli(Likelihood):
    name = "bernoulli"

    def nll(self, x: Any, params: Any) -> Any:
        return bernoulli_nll(x, params)

    def mean(self, params: Any, xp: Any = ops) -> Any:  # noqa: D102
        return ops.sigmoid(params) if xp is ops else 1.0 / (1.0 + xp.exp(-params))


class ContinuousBernoulli(Likelihood):
    name = "continuous_bernoulli"

    def nll(self, x: Any, params: Any) -> Any:
        return continuous_bernoulli_nll(x, params)

    def mean(self, params: Any, xp: Any = ops) -> Any:  # noqa: D102
        # E[x] = λ/(2λ−1) + 1/(2 atanh(1−2λ)) = 1/(1−e^{−l}) − 1/l, and 1/2 at l = 0. Near 0 the
        # two terms (~1/l each) cancel: in float32 with 1 − exp(−l) the mean erred by up to 0.06
        # at |l| = 1e-3. expm1 keeps the error ~1e-5 for |l| ≥ 1e-2, and the series below that
        # (next term l⁵/30240) is exact to float32.
        small = xp.abs(params) < 1e-2
        safe = xp.where(small, xp.ones_like(params), params)
        exact = -1.0 / xp.expm1(-safe) - 1.0 / safe
        return xp.where(small, 0.5 + params / 12.0 - params**3 / 720.0, exact)


class DiscretizedLogistic(Likelihood):
    name = "discretized_logistic"
    params_per_channel = 2
    discrete_8bit = True

    def nll(self, x: Any, params: Any) -> Any:
        mean, log_scale = ops.split(params, 2, axis=-1)
        return -_per_image(discretized_logistic_log_probs(x, mean, log_scale))

    def mean(self, params: Any, xp: Any = ops) -> Any:  # noqa: D102
        mean, _ = xp.split(params, 2, axis=-1)
        return xp.clip((mean + 1.0) / 2.0, 0.0, 1.0)


class DiscretizedLogisticRGB(DiscretizedLogistic):
    """The discretized logistic with the colour channels of a pixel coupled (Salimans et al.
    2017, PixelCNN++): green's mean moves with the red value, blue's with red and green,

        m_R = μ_R,  m_G = μ_G + a·x_R,  m_B = μ_B + b·x_R + c·x_G   (x on the [−1, 1] scale),

    with a, b, c = tanh of three decoder maps per pixel. Each channel is still 256 bins that sum
    to 1 given the ones before it, so the NLL stays a true discrete likelihood; it only stops
    paying three times for an error in brightness, which the three channels of a photo share.
    RGB images only (``auto`` picks it for 8-bit RGB data)."""

    name = "discretized_logistic_rgb"
    params_per_channel = 3

    @staticmethod
    def _split(params: Any, xp: Any = ops) -> tuple[Any, Any, Any]:
        mean, log_scale, coeffs = xp.split(params, 3, axis=-1)
        return mean, log_scale, xp.tanh(coeffs)

    @staticmethod
    def _coupled(mean: Any, coeffs: Any, y: Any) -> Any:
        """The channels' means given ``y`` (the pixel's values on [−1, 1], or their estimates)."""
        m_r = mean[..., 0:1]
        m_g = mean[..., 1:2] + coeffs[..., 0:1] * y[..., 0:1]
        m_b = mean[..., 2:3] + coeffs[..., 1:2] * y[..., 0:1] + coeffs[..., 2:3] * y[..., 1:2]
        return ops.concatenate([m_r, m_g, m_b], axis=-1)

    def nll(self, x: Any, params: Any) -> Any:
        mean, log_scale, coeffs = self._split(params)
        y = 2.0 * ops.round(x * 255.0) / 255.0 - 1.0  # the levels, as the bins are centred
        return -_per_image(discretized_logistic_log_probs(x, self._coupled(mean, coeffs, y), log_scale))

    def mean(self, params: Any, xp: Any = ops) -> Any:  # noqa: D102
        # Channel by channel: red's mean, then green's given red's, then blue's given both.
        mean, _, coeffs = self._split(params, xp)
        red = xp.clip(mean[..., 0:1], -1.0, 1.0)
        green = xp.clip(mean[..., 1:2] + coeffs[..., 0:1] * red, -1.0, 1.0)
        blue = mean[..., 2:3] + coeffs[..., 1:2] * red + coeffs[..., 2:3] * green
        y = xp.concatenate([red, green, xp.clip(blue, -1.0, 1.0)], axis=-1)
        return (y + 1.0) / 2.0


class PixelCNNLogistic(DiscretizedLogistic):
    """The discretized logistic, its parameters corrected from the pixels before each one
    (:mod:`tuner.vae.pixel_head`)."""

    name = "pixelcnn_logistic"
    autoregressive = True


class PixelCNNLogisticRGB(DiscretizedLogisticRGB):
    """The coupled RGB logistic, its parameters corrected from the pixels before each one
    (:mod:`tuner.vae.pixel_head`)."""

    name = "pixelcnn_logistic_rgb"
    autoregressive = True


_CLASSES: dict[str, type[Likelihood]] = {
    cls.name: cls
    for cls in (
        Bernoulli,
        ContinuousBernoulli,
        DiscretizedLogistic,
        DiscretizedLogisticRGB,
        PixelCNNLogistic,
        PixelCNNLogisticRGB,
    )
}
NAMES = tuple(_CLASSES)


def get_likelihood(name: str) -> Likelihood:
    """The likelihood called ``name`` (one of :data:`NAMES`, those of ``ModelConfig.likelihood``)."""
    if name not in _CLASSES:
        raise ValueError(f"Argument `likelihood` must be one of {list(NAMES)}. Received: likelihood={name!r}")
    return _CLASSES[name]()


def bits_per_dim(nll_nats: float, n_dims: int) -> float:
    """Nats per image → bits per dimension (pixel × channel)."""
    return nll_nats / (n_dims * math.log(2.0))


def _chunks(images: Any, rows: int = 4096) -> Iterator[np.ndarray]:
    """``images`` (an array, or anything :func:`numpy.asarray` reads, such as the uint8 rows of
    an 8-bit training split) as arrays of at most ``rows`` images: checks stay small in memory."""
    for start in range(0, len(images), rows):
        yield np.asarray(images[start : start + rows])


def _is_binary(images: Any) -> bool:
    # uint8 pixels are levels 0–255 (1.0 is 255); others are floats in [0, 1].
    return all(np.all((a == 0) | (a == (255 if a.dtype == np.uint8 else 1))) for a in _chunks(images))


def _channels(images: Any) -> int:
    shape = getattr(images, "shape", None) or np.shape(images[:1])
    return int(shape[-1]) if len(shape) == 4 else 1


def _is_8bit(images: Any) -> bool:
    if getattr(images, "dtype", None) == np.uint8:  # uint8 levels (an 8-bit split's rows): nothing to read
        return True

    def levels(a: np.ndarray) -> bool:
        if a.dtype == np.uint8:
            return True
        scaled = a * 255.0
        return bool(np.all(np.abs(scaled - np.round(scaled)) < 1e-3))

    return all(levels(a) for a in _chunks(images))


def choose_likelihood(requested: str, images: Any, dynamic_binarization: bool) -> str:
    """The likelihood to train with: ``requested``, or for ``auto`` the one the data calls for
    (binary or dynamically binarized → bernoulli, 8-bit grey → discretized_logistic, 8-bit RGB
    → discretized_logistic_rgb, other grey levels → continuous_bernoulli). ``images``: floats in
    [0, 1], or uint8 levels 0–255 (an array, or the rows of an 8-bit training split), read a few
    thousand images at a time.

    Raises:
        DataError: ``bernoulli`` asked for on images that are neither binary nor dynamically
            binarized (its NLL would bound nothing).
    """
    binary = dynamic_binarization or _is_binary(images)
    rgb = _channels(images) == 3
    if requested == "auto":
        if binary:
            return "bernoulli"
        if _is_8bit(images):
            return "discretized_logistic_rgb" if rgb else "discretized_logistic"
        return "continuous_bernoulli"
    kind = _CLASSES.get(requested, Likelihood)
    if issubclass(kind, DiscretizedLogisticRGB) and not rgb:
        raise DataError(
            f"model.likelihood: {requested} couples 3 colour channels, but the images have "
            f"{_channels(images)}; use model.likelihood: {requested.removesuffix('_rgb')}"
        )
    if requested == "bernoulli" and not binary:
        fix = "model.likelihood: discretized_logistic" if _is_8bit(images) else "model.likelihood: continuous_bernoulli"
        raise DataError(
            "model.likelihood: bernoulli needs binary pixels, but the training images have grey levels; "
            f"set data.dynamic_binarization: true, or {fix}"
        )
    if kind.discrete_8bit and not _is_8bit(images):
        raise DataError(
            f"model.likelihood: {requested} needs 8-bit pixels (multiples of 1/255); "
            "use model.likelihood: continuous_bernoulli"
        )
    return requested


def unfit_search_choice(spec: Any, images: Any, dynamic_binarization: bool) -> str | None:
    """The one-line refusal of the first likelihood in a study's ``search.likelihood`` (a
    ``{choices: [...]}`` entry or a fixed value) that cannot train on ``images`` (see
    :func:`choose_likelihood`), or None when every one can."""
    choices = getattr(spec, "choices", None)
    for choice in [spec] if choices is None else choices:
        name = str(choice)
        try:
            choose_likelihood(name, images, dynamic_binarization)
        except DataError:
            if name == "bernoulli":
                reason = "bernoulli cannot train on grey images unless data.dynamic_binarization is true"
            elif issubclass(_CLASSES.get(name, Likelihood), DiscretizedLogisticRGB) and _channels(images) != 3:
                reason = f"{name} needs RGB images, and the training images are not"
            else:
                reason = f"{name} needs 8-bit pixels (multiples of 1/255), and the training images are not"
            fix = "remove it from the choices" if choices is not None else "fix another likelihood"
            return f"search.likelihood: {reason}; {fix}"
    return None
