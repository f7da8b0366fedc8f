"""On-the-fly, in-place augmentation of a mini-batch: the ``AUGMENTATIONS`` registry.

Rows of ``x`` are images in plane order (:mod:`mlplab.images`), viewed here as
``(n, channels, height, width)``; all randomness comes from the run's generator, and the work
is done in the batch buffer the trainer already owns (nothing of the size of the training set
is copied). Pixels made up by an augmentation are 0: the training mean, after
standardisation.

Each augmentation declares its recipe ``options`` (:mod:`mlplab.options`); the first one is
its switch (``flip = true``, ``translate = 4``, ``cutout = 8``): it runs when that value is
true or non-zero. They run in the order of :data:`AUGMENTATIONS`. A new one is a subclass
and one line there; the trainer, the estimator and the ablation read the registry.

The NumPy code is the reference; on a large batch (or with more than one thread,
:func:`mlplab.kernels.wanted`) flips, translations, crops and cutouts move the same values
with a compiled kernel, one image per loop iteration, without NumPy's temporaries. The
random draws are the same, from the same generator, in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from mlplab import kernels
from mlplab.errors import ConfigError
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.options import Flag, Integer, Option, Real, check_options


class Augmentation:
    """Base class: ``aug(x, rng)`` changes the mini-batch rows ``x`` in place."""

    name: ClassVar[str] = "augmentation"
    ablation_name: ClassVar[str] = ""  # its row in an ablation (default: its name)
    options: ClassVar[dict[str, Option]] = {}
    needs_image: ClassVar[bool] = True  # False: works on any rows (e.g. noise)

    def __init__(self, shape: ImageShape | None, **opts: Any) -> None:
        self.shape = shape
        self.opts = check_options(f"augmentation {self.name}", self.options, opts)
        if self.needs_image and shape is None:
            raise ConfigError(f"{self.name} needs images; these data are flat features")
        if shape is not None:
            self.check_shape(shape)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("ablation_name"):
            cls.ablation_name = cls.name

    @classmethod
    def switch(cls) -> str:
        """The option that turns it on."""
        return next(iter(cls.options))

    @classmethod
    def active(cls, values: Mapping[str, Any]) -> bool:
        return bool(values.get(cls.switch(), cls.options[cls.switch()].default))

    def check_shape(self, shape: ImageShape) -> None:
        """Raise ConfigError if the options do not fit images of ``shape``."""

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError


class Flip(Augmentation):
    """Mirror each image left-right with probability 1/2."""

    name = "flip"
    ablation_name = "flips"
    options: ClassVar[dict[str, Option]] = {"flip": Flag(False, help="random horizontal flips")}

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        img = self.shape.planes(x)  # type: ignore[union-attr]
        rows = np.flatnonzero(rng.random(x.shape[0]) < 0.5)
        if rows.size and _compiled(img):
            kernels.flip(img, rows)
        elif rows.size:
            img[rows] = img[rows, :, :, ::-1]


class Translate(Augmentation):
    """Shift each image by up to ``translate`` pixels in each direction (zeros come in)."""

    name = "translate"
    ablation_name = "translations"
    options: ClassVar[dict[str, Option]] = {
        "translate": Integer(0, 0, 64, help="largest shift in pixels"),
    }

    def check_shape(self, shape: ImageShape) -> None:
        _fits("translate", self.opts["translate"], shape, min(shape.height, shape.width) // 2)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        k = self.opts["translate"]
        shifts = rng.integers(-k, k + 1, size=(x.shape[0], 2))
        img = self.shape.planes(x)  # type: ignore[union-attr]
        if _compiled(img):
            kernels.translate(img, shifts)
        else:
            translate_batch(img, shifts, k)


class Crop(Augmentation):
    """Random crops of the image padded by ``crop`` pixels of its own reflection (the
    CIFAR recipe of ResNets, with reflect rather than zero padding: zero padding is
    ``translate``)."""

    name = "crop"
    ablation_name = "crops"
    options: ClassVar[dict[str, Option]] = {
        "crop": Integer(0, 0, 64, help="reflection padding before a random crop, in pixels"),
    }

    def check_shape(self, shape: ImageShape) -> None:
        _fits("crop", self.opts["crop"], shape, min(shape.height, shape.width) - 1)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        k = self.opts["crop"]
        img = self.shape.planes(x)  # type: ignore[union-attr]
        n, _, h, w = img.shape
        if _compiled(img):
            kernels.crop(img, rng.integers(0, 2 * k + 1, size=(n, 2)), k)
            return
        padded = np.pad(img, ((0, 0), (0, 0), (k, k), (k, k)), mode="reflect")
        offsets = rng.integers(0, 2 * k + 1, size=(n, 2))
        for i, (dy, dx) in enumerate(offsets):
            img[i] = padded[i, :, dy : dy + h, dx : dx + w]


class Cutout(Augmentation):
    """Zero a ``cutout x cutout`` square at a random centre of each image, clipped at the
    border (DeVries & Taylor 2017)."""

    name = "cutout"
    options: ClassVar[dict[str, Option]] = {
        "cutout": Integer(0, 0, 4096, help="side of the zeroed square, in pixels"),
    }

    def check_shape(self, shape: ImageShape) -> None:
        _fits("cutout", self.opts["cutout"], shape, min(shape.height, shape.width))

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        s = self.opts["cutout"]
        img = self.shape.planes(x)  # type: ignore[union-attr]
        n, _, h, w = img.shape
        top = np.asarray(rng.integers(0, h, size=n)) - s // 2  # the square's corner
        left = np.asarray(rng.integers(0, w, size=n)) - s // 2
        if _compiled(img):
            kernels.cutout(img, top, left, s)
            return
        for i in range(n):
            y0, x0 = int(top[i]), int(left[i])
            img[i, :, max(y0, 0) : y0 + s, max(x0, 0) : x0 + s] = 0


class Noise(Augmentation):
    """Add N(0, noise_std^2) to every value."""

    name = "noise"
    ablation_name = "noise"
    needs_image = False
    options: ClassVar[dict[str, Option]] = {
        "noise_std": Real(0.0, 0.0, 100.0, help="std of additive Gaussian noise"),
    }

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> None:
        x += (rng.standard_normal(x.shape) * self.opts["noise_std"]).astype(x.dtype, copy=False)


def _compiled(img: np.ndarray) -> bool:
    """Whether the images go to a kernel (:func:`mlplab.kernels.wanted`; C-ordered only)."""
    return kernels.wanted(img.size) and img.flags.c_contiguous


def _fits(what: str, k: int, shape: ImageShape, limit: int) -> None:
    """One error when option ``what`` = ``k`` pixels exceeds ``limit`` for ``shape``."""
    if k > limit:
        raise ConfigError(f"{what} = {k} does not fit {shape} images (at most {limit})")


#: name -> augmentation class, in the order they run on a mini-batch.
AUGMENTATIONS: dict[str, type[Augmentation]] = {
    "flip": Flip,
    "translate": Translate,
    "crop": Crop,
    "cutout": Cutout,
    "noise": Noise,
}


def make_augmentations(values: Mapping[str, Any], shape: ImageShape | None) -> list[Augmentation]:
    """The active augmentations, in registry order, from option ``values`` (their switches
    and options by name; missing ones take their defaults)."""
    out = []
    for cls in AUGMENTATIONS.values():
        mine = {k: values[k] for k in cls.options if k in values}
        if cls.active(mine):
            out.append(cls(shape, **mine))
    return out


def augment_batch(
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    flip: bool = False,
    translate: int = 0,
    noise_std: float = 0.0,
    shape: ImageShape = CIFAR10_SHAPE,
) -> None:
    """Augment ``x`` in place: random horizontal flips (p = 1/2), random translations by up
    to ``translate`` pixels in each direction (vacated pixels are 0, the mean after
    standardisation), then additive N(0, noise_std^2) noise."""
    values = {"flip": flip, "translate": translate, "noise_std": noise_std}
    for aug in make_augmentations(values, shape):
        aug(x, rng)


def translate_batch(img: np.ndarray, shifts: np.ndarray, k: int) -> None:
    """Translate each image ``img[i]`` (``(n, C, H, W)``, in place) by ``shifts[i] = (dy, dx)``.

    Output pixel ``(r, c)`` of image ``i`` is input pixel ``(r - dy, c - dx)``, or 0 where
    that falls outside the image: the window at ``(k - dy, k - dx)`` of a zero-padded copy
    of the batch. The images with the same shift (at most ``(2k + 1)^2`` groups) are copied
    together, one slice each.
    """
    n, c, h, w = img.shape
    padded = np.zeros((n, c, h + 2 * k, w + 2 * k), dtype=img.dtype)
    padded[:, :, k : k + h, k : k + w] = img
    keys = (shifts[:, 0] + k) * (2 * k + 1) + (shifts[:, 1] + k)
    order = np.argsort(keys, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
        dy, dx = shifts[rows[0]]
        img[rows] = padded[rows, :, k - dy : k - dy + h, k - dx : k - dx + w]
