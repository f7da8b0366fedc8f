"""Weight initialisation schemes.

Every scheme draws ``W`` of shape ``(d_in, d_out)`` from the run's
``np.random.Generator``; biases start at zero.

- ``course``: W ~ N(0, 1/d_in), the DD2424 default (Xavier-style, fan-in only).
- ``he``:     W ~ N(0, 2/d_in), for ReLU nets (He et al. 2015).
- ``xavier``: W ~ N(0, 2/(d_in + d_out)) (Glorot & Bengio 2010).
- ``normal``: W ~ N(0, sigma^2) with a given ``sigma`` (the sensitivity study).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mlplab.errors import ConfigError


def _normal(d_in: int, d_out: int, sigma: float | None) -> float:
    if sigma is None or not sigma > 0 or not math.isfinite(sigma):
        raise ConfigError(f"init 'normal' needs a positive finite init_sigma, got {sigma!r}")
    return float(sigma)


#: name -> standard deviation of the weights, from (d_in, d_out, sigma).
INITS: dict[str, Callable[[int, int, float | None], float]] = {
    "course": lambda d_in, d_out, sigma: 1.0 / math.sqrt(d_in),
    "he": lambda d_in, d_out, sigma: math.sqrt(2.0 / d_in),
    "xavier": lambda d_in, d_out, sigma: math.sqrt(2.0 / (d_in + d_out)),
    "normal": _normal,
}


def init_std(scheme: str, d_in: int, d_out: int, sigma: float | None = None) -> float:
    """Return the standard deviation of the weights for ``scheme`` (see :data:`INITS`)."""
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    return INITS[scheme](d_in, d_out, sigma)


def init_weights(
    rng: np.random.Generator,
    d_in: int,
    d_out: int,
    scheme: str = "course",
    sigma: float | None = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Draw a ``(d_in, d_out)`` weight matrix in ``dtype``.

    Samples are drawn in float64 and then cast so that float32 and float64
    networks built from the same seed hold the same weights (up to rounding).
    """
    std = init_std(scheme, d_in, d_out, sigma)
    return (rng.standard_normal((d_in, d_out)) * std).astype(dtype)
