"""Image geometry: the shape of an image and the order of its pixels in a row.

Bottom floor: NumPy only, no state. Every image in mlplab travels as one row of
``d = channels * height * width`` values in *plane order*: the whole first channel
(row-major ``height x width``), then the second, ... (CIFAR-10's official order: 1024 R
values, then 1024 G, then 1024 B). Flat features (an ``.npz`` of ``(N, d)`` arrays) have
no :class:`ImageShape`; the tools that need pictures (flips, translations, crops, weight
pictures) refuse them with one clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlplab.errors import ConfigError

#: Largest side accepted (a typo guard: 4096 x 4096 x 3 is 50 M inputs per row).
MAX_SIDE = 4096
#: Channels an image may have: grayscale or colour.
CHANNELS = (1, 3)


@dataclass(frozen=True)
class ImageShape:
    """``height x width`` pixels of ``channels`` (1: grayscale, 3: RGB) values each."""

    height: int
    width: int
    channels: int

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= MAX_SIDE:
                raise ConfigError(f"image {name} must be an integer in 1..{MAX_SIDE}, got {v!r}")
        c = self.channels
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c not in CHANNELS:
            raise ConfigError(f"images must have 1 or 3 channels, got {self.channels!r}")

    @property
    def size(self) -> int:
        """Values per row: ``channels * height * width``."""
        return self.channels * self.height * self.width

    def __str__(self) -> str:
        kind = "grayscale" if self.channels == 1 else "RGB"
        return f"{self.height}x{self.width} {kind}"

    def to_list(self) -> list[int]:
        """``[height, width, channels]``, as model files and results store it."""
        return [self.height, self.width, self.channels]

    @classmethod
    def parse(cls, value: Any, what: str = "image shape") -> ImageShape:
        """An :class:`ImageShape` from ``[height, width, channels]`` (a list or tuple)."""
        if isinstance(value, ImageShape):
            return value
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
            raise ConfigError(f"{what} must be [height, width, channels], got {value!r}")
        h, w, c = value
        return cls(h, w, c)  # each checked by __post_init__

    # -- views --------------------------------------------------------------------------------
    def planes(self, x: np.ndarray) -> np.ndarray:
        """View rows ``(n, d)`` as ``(n, channels, height, width)`` (no copy)."""
        self.check_rows(x)
        return x.reshape(x.shape[0], self.channels, self.height, self.width)

    def to_hwc(self, x: np.ndarray) -> np.ndarray:
        """View rows ``(n, d)`` as ``(n, height, width, channels)`` pictures (for plotting)."""
        return self.planes(np.asarray(x)).transpose(0, 2, 3, 1)

    def from_hwc(self, hwc: np.ndarray) -> np.ndarray:
        """``(n, height, width, channels)`` pictures as rows ``(n, d)`` in plane order."""
        hwc = np.asarray(hwc)
        if hwc.ndim == 3 and self.channels == 1:
            hwc = hwc[..., None]
        if hwc.shape[1:] != (self.height, self.width, self.channels):
            raise ConfigError(f"expected pictures of {self}, got an array of shape {hwc.shape}")
        return np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)).reshape(hwc.shape[0], self.size)

    def check_rows(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[1] != self.size:
            raise ConfigError(
                f"rows of {self} images have {self.size} values, got an array of shape {x.shape}"
            )

    def flip_permutation(self) -> np.ndarray:
        """Column order of the horizontally mirrored image: ``x[:, perm]`` mirrors each row."""
        idx = np.arange(self.size).reshape(self.channels, self.height, self.width)
        return idx[:, :, ::-1].ravel()


#: CIFAR-10's images, and the shape assumed for model files written before shapes were stored.
CIFAR10_SHAPE = ImageShape(32, 32, 3)


def shape_or_none(value: Any) -> ImageShape | None:
    """``None`` (flat features) or the :class:`ImageShape` of ``value``."""
    return None if value is None else ImageShape.parse(value)


def require_image(shape: ImageShape | None, what: str, d: int) -> ImageShape:
    """``shape``, or one clear error saying that ``what`` needs images, not ``d`` features."""
    if shape is None:
        raise ConfigError(f"{what} needs images, but the data are {d} flat features")
    return shape
