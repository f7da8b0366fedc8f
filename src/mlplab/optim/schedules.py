"""Learning-rate schedules: pure functions of the update step.

``step`` counts mini-batch updates from 0. Every schedule is a small frozen
object with ``__call__(step) -> lr``, so the same step always gives the same
rate (a resumed run needs nothing but the step).

A schedule that a recipe names (:data:`SCHEDULES`) also declares its recipe ``options``
(:mod:`mlplab.options`), checks the rules between them (:meth:`Schedule.check`), computes
the length of the run (:meth:`Schedule.updates`) and builds itself from the options
(:meth:`Schedule.from_options`). Nothing else branches on a schedule's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mlplab.errors import ConfigError
from mlplab.options import Integer, Option, Real

#: More updates than this in one run is a typo (1e9 updates of a tiny net take weeks).
MAX_UPDATES = 10**9


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


class Schedule:
    """Base class: ``lr = schedule(step)``."""

    options: ClassVar[dict[str, Option]] = {}

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    @classmethod
    def check(cls, o: Mapping[str, Any]) -> None:
        """Rules between the (each already checked) options ``o``; raise ConfigError."""

    @classmethod
    def updates(cls, o: Mapping[str, Any], n_train: int, batch_size: int) -> int:
        """The number of updates of a run (default: ``epochs`` epochs of ``n // B``)."""
        return _bounded(o["epochs"] * (n_train // batch_size), "epochs")

    @classmethod
    def from_options(
        cls, o: Mapping[str, Any], total: int, n_train: int, batch_size: int
    ) -> Schedule:
        """The schedule of a run of ``total`` updates on ``n_train`` rows."""
        raise NotImplementedError


def _bounded(updates: float, what: str) -> int:
    if not updates <= MAX_UPDATES:
        raise ConfigError(f"{what} make {updates:.3g} updates; at most {MAX_UPDATES:.0e}")
    return round(updates)


_ETA = {"eta": Real(0.01, 0.0, low_open=True, help="the (starting) learning rate")}
_EPOCHS = {"epochs": Real(0.0, 0.0, low_open=True, help="length of the run in epochs")}


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = lr``."""

    lr: float
    options: ClassVar[dict[str, Option]] = {**_ETA, **_EPOCHS}

    def __post_init__(self) -> None:
        _positive("learning rate", self.lr)

    def __call__(self, step: int) -> float:
        return float(self.lr)

    @classmethod
    def from_options(
        cls, o: Mapping[str, Any], total: int, n_train: int, batch_size: int
    ) -> Schedule:
        return cls(o["eta"])


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr(t) = lr * gamma ** floor(t / step_size)`` (PyTorch ``StepLR``, counted in updates)."""

    lr: float
    step_size: int
    gamma: float = 0.1
    options: ClassVar[dict[str, Option]] = {
        **_ETA,
        **_EPOCHS,
        "step_size": Integer(0, 1, help="updates between two decays"),
        "gamma": Real(0.1, 0.0, low_open=True, help="decay factor"),
    }

    @classmethod
    def from_options(
        cls, o: Mapping[str, Any], total: int, n_train: int, batch_size: int
    ) -> Schedule:
        return cls(o["eta"], o["step_size"], o["gamma"])

    def __post_init__(self) -> None:
        _positive("learning rate", self.lr)
        _positive("step_size", self.step_size)
        _positive("gamma", self.gamma)

    def __call__(self, step: int) -> float:
        return float(self.lr * self.gamma ** (step // self.step_size))


class _OverTheRun(Schedule):
    """A schedule from ``eta`` over the whole run of ``epochs`` epochs (its ``total_steps``)."""

    options: ClassVar[dict[str, Option]] = {**_ETA, **_EPOCHS}

    @classmethod
    def from_options(
        cls, o: Mapping[str, Any], total: int, n_train: int, batch_size: int
    ) -> Schedule:
        return cls(o["eta"], max(total, 1))  # type: ignore[call-arg]  # (lr, total_steps)


@dataclass(frozen=True)
class LinearDecay(_OverTheRun):
    """Linear from ``lr`` at step 0 to ``lr_end`` at ``total_steps``, constant after."""

    lr: float
    total_steps: int
    lr_end: float = 0.0

    def __post_init__(self) -> None:
        _positive("learning rate", self.lr)
        _positive("total_steps", self.total_steps)
        if self.lr_end < 0:
            raise ConfigError(f"lr_end must be >= 0, got {self.lr_end!r}")

    def __call__(self, step: int) -> float:
        frac = min(step / self.total_steps, 1.0)
        return float(self.lr + (self.lr_end - self.lr) * frac)


@dataclass(frozen=True)
class Cosine(_OverTheRun):
    """``lr_min + (lr - lr_min) * (1 + cos(pi * t / total_steps)) / 2`` (PyTorch
    ``CosineAnnealingLR`` with ``T_max = total_steps``), constant at ``lr_min`` after."""

    lr: float
    total_steps: int
    lr_min: float = 0.0

    def __post_init__(self) -> None:
        _positive("learning rate", self.lr)
        _positive("total_steps", self.total_steps)
        if not 0 <= self.lr_min <= self.lr:
            raise ConfigError(f"lr_min must be in [0, lr], got {self.lr_min!r}")

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps)
        return float(
            self.lr_min
            + (self.lr - self.lr_min) * (1 + math.cos(math.pi * t / self.total_steps)) / 2
        )


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Triangular cyclical learning rate (Smith 2017), PyTorch ``CyclicLR`` argument names.

    With ``n_s = step_size_up`` (and ``step_size_down`` equal to it, as in the course)
    the rate climbs linearly from ``base_lr`` (eta_min) to ``max_lr`` (eta_max) over
    steps ``[2 l n_s, (2 l + 1) n_s]`` and falls back over ``[(2 l + 1) n_s, 2 (l + 1) n_s]``::

        cycle = floor(1 + t / (up + down));  x = 1 + t / (up + down) - cycle
        scale = x / r            if x <= r, with r = up / (up + down)
              = (x - 1) / (r - 1) otherwise
        lr(t) = base_lr + (max_lr - base_lr) * scale
    """

    base_lr: float
    max_lr: float
    step_size_up: int
    step_size_down: int | None = None
    options: ClassVar[dict[str, Option]] = {
        "eta_min": Real(1e-5, 0.0, low_open=True, help="lowest rate (base_lr)"),
        "eta_max": Real(1e-1, 0.0, low_open=True, help="highest rate (max_lr)"),
        "n_s": Integer(500, 0, help="updates from eta_min to eta_max (step_size_up)"),
        "n_s_k": Real(0.0, 0.0, help="if > 0: n_s = n_s_k * floor(n_train / batch_size)"),
        "cycles": Integer(1, 1, help="full cycles of 2 n_s updates"),
    }

    @classmethod
    def check(cls, o: Mapping[str, Any]) -> None:
        if o["eta_min"] > o["eta_max"]:
            raise ConfigError(f"eta_min ({o['eta_min']}) must not exceed eta_max ({o['eta_max']})")
        if o["n_s"] < 1 and o["n_s_k"] <= 0:
            raise ConfigError(f"n_s must be >= 1 (or set n_s_k), got {o['n_s']}")

    @staticmethod
    def resolved_n_s(o: Mapping[str, Any], n_train: int, batch_size: int) -> int:
        """``n_s``, or ``n_s_k * floor(n_train / batch_size)`` when ``n_s_k`` is set."""
        if o["n_s_k"] > 0:
            return max(1, _bounded(o["n_s_k"] * (n_train // batch_size), "n_s_k"))
        return int(o["n_s"])

    @classmethod
    def updates(cls, o: Mapping[str, Any], n_train: int, batch_size: int) -> int:
        return _bounded(2 * cls.resolved_n_s(o, n_train, batch_size) * o["cycles"], "cycles")

    @classmethod
    def from_options(
        cls, o: Mapping[str, Any], total: int, n_train: int, batch_size: int
    ) -> Schedule:
        return cls(o["eta_min"], o["eta_max"], cls.resolved_n_s(o, n_train, batch_size))

    def __post_init__(self) -> None:
        _positive("eta_min (base_lr)", self.base_lr)
        _positive("eta_max (max_lr)", self.max_lr)
        if self.base_lr > self.max_lr:
            raise ConfigError(f"eta_min ({self.base_lr}) must not exceed eta_max ({self.max_lr})")
        _positive("n_s (step_size_up)", self.step_size_up)
        if self.step_size_down is not None:
            _positive("step_size_down", self.step_size_down)

    @property
    def cycle_length(self) -> int:
        down = self.step_size_up if self.step_size_down is None else self.step_size_down
        return int(self.step_size_up + down)

    def __call__(self, step: int) -> float:
        total = float(self.cycle_length)
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        return float(self.base_lr + (self.max_lr - self.base_lr) * scale)


@dataclass(frozen=True)
class Ramp(Schedule):
    """Learning-rate range test (Smith 2017): from ``lr_min`` at step 0 to ``lr_max`` at
    ``total_steps``, linearly (``mode="linear"``) or geometrically (``mode="exp"``)."""

    lr_min: float
    lr_max: float
    total_steps: int
    mode: str = "linear"

    def __post_init__(self) -> None:
        _positive("lr_min", self.lr_min)
        _positive("lr_max", self.lr_max)
        _positive("total_steps", self.total_steps)
        if self.lr_min >= self.lr_max:
            raise ConfigError(f"lr_min ({self.lr_min}) must be below lr_max ({self.lr_max})")
        if self.mode not in ("linear", "exp"):
            raise ConfigError(f"ramp mode must be 'linear' or 'exp', got {self.mode!r}")

    def __call__(self, step: int) -> float:
        f = min(step / self.total_steps, 1.0)
        if self.mode == "linear":
            return float(self.lr_min + (self.lr_max - self.lr_min) * f)
        return float(self.lr_min * (self.lr_max / self.lr_min) ** f)


#: name -> the schedule class a recipe's ``schedule`` names (each declares its options).
SCHEDULES: dict[str, type[Schedule]] = {
    "cyclic": Cyclic,
    "constant": Constant,
    "step": StepDecay,
    "linear": LinearDecay,
    "cosine": Cosine,
}
