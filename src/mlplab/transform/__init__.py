"""The fitted input transform: what turns raw rows into a network's inputs.

One object, :class:`InputTransform`, fitted once on the training rows and applied to every
other row: by the recipe's splits (validation and test), by a saved model (``predict``,
``evaluate``), by the scikit-learn estimator and, as a formula, by the ONNX export::

    x  ->  (x / scale - mean) / std          standardisation (:mod:`.standardize`)
       ->  x @ whiten                        optional ZCA whitening (:mod:`.whiten`)

The mirror rule lives here too (:func:`mirror_for`): the whitening covariance is averaged
with its horizontal mirror exactly when the rows are images that training flips, so that
flipping a whitened image equals whitening the flipped image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlplab.images import ImageShape
from mlplab.transform.standardize import (
    check_range,
    column_stats,
    standardize,
    transform_pixels,
)
from mlplab.transform.whiten import apply_whitening, fit_zca

__all__ = [
    "InputTransform",
    "apply_whitening",
    "check_range",
    "column_stats",
    "fit_zca",
    "mirror_for",
    "standardize",
]


def mirror_for(image_shape: ImageShape | None, flips: bool) -> ImageShape | None:
    """The image shape whose flip the whitening is made symmetric under, or None.

    ``flips``: whether training flips the rows (a ``flip`` augmentation or flip-averaged
    predictions). Flat features have no mirror; images that are never flipped keep their
    own covariance (a digit and its mirror are different digits).
    """
    return image_shape if flips and image_shape is not None else None


@dataclass(frozen=True, eq=False)
class InputTransform:
    """``x -> ((x / scale - mean) / std) @ whiten`` (no ``@ whiten`` when it is None).

    ``mean``, ``std``: ``(d,)`` float64 statistics of the training rows on the
    ``x / scale`` scale (a zero std replaced by 1); ``whiten``: the ``(d, d)`` ZCA matrix,
    fitted on the standardised training rows, or None; ``scale``: 255 for uint8 pixels,
    1 for float features.
    """

    mean: np.ndarray
    std: np.ndarray
    whiten: np.ndarray | None = None
    scale: float = 255.0

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        *,
        scale: float = 1.0,
        standardise: bool = True,
        zca_eps: float = 0.0,
        mirror: ImageShape | None = None,
    ) -> InputTransform:
        """Fit on the training rows ``x`` ``(n, d)``: float64 column statistics (or the
        identity with ``standardise=False``), then, with ``zca_eps > 0``, the ZCA matrix of
        the standardised rows, symmetric under ``mirror``'s flip (:func:`mirror_for`)."""
        d = x.shape[1]
        if standardise:
            mean, std = column_stats(np.asarray(x) / scale if scale != 1 else x)
        else:
            mean, std = np.zeros(d), np.ones(d)
        fitted = cls(mean, std, None, scale)
        if zca_eps:
            return fitted.whitened(fitted(x, np.float64, whiten=False), zca_eps, mirror)
        return fitted

    def whitened(
        self, standardised: np.ndarray, eps: float, mirror: ImageShape | None
    ) -> InputTransform:
        """This transform followed by the ZCA matrix (float64) of the ``standardised``
        training rows (:func:`~mlplab.transform.whiten.fit_zca`)."""
        return InputTransform(
            self.mean, self.std, fit_zca(standardised, eps, mirror=mirror), self.scale
        )

    def __call__(
        self,
        x: np.ndarray,
        dtype: np.dtype | type = np.float32,
        *,
        whiten: bool = True,
        what: str = "the data",
    ) -> np.ndarray:
        """The network inputs of rows ``x`` as a new ``(n, d)`` array of ``dtype``:
        :func:`~mlplab.transform.standardize.transform_pixels`, the formula the splits, a
        saved model and the estimator all compute (``whiten=False``: standardised only;
        ``what``: the rows' name in an error)."""
        w = self.whiten if whiten else None
        return transform_pixels(x, self.mean, self.std, w, dtype, scale=self.scale, what=what)
