"""Learning-rate schedules: pure functions of the update step.

``step`` counts mini-batch updates from 0. Every schedule is a small frozen
object with ``__call__(step) -> lr``, so the same step always gives the same
rate (a resumed run needs nothing but the step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlplab.errors import ConfigError


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


class Schedule:
    """Base class: ``lr = schedule(step)``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = lr``."""

    lr: float

    def __post_init__(self) -> None:
        _positive("learning rate", self.lr)

    def __call__(self, step: int) -> float:
        return float(self.lr)


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr(t) = lr * gamma ** floor(t / step_size)`` (PyTorch ``StepLR``, counted in updates)."""

    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _positive("learning rate", self.lr)
        _positive("step_size", self.step_size)
        _positive("gamma", self.gamma)

    def __call__(self, step: int) -> float:
        return float(self.lr * self.gamma ** (step // self.step_size))


@dataclass(frozen=True)
class LinearDecay(Schedule):
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
class Cosine(Schedule):
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


#: name -> the schedule of a configuration ``c`` (a :class:`mlplab.config.Config`), given
#: its total number of updates and training rows. ``Config.validate`` checks names here.
SCHEDULES: dict[str, Callable[[Any, int, int], Schedule]] = {
    "cyclic": lambda c, total, n: Cyclic(c.eta_min, c.eta_max, c.resolved_n_s(n)),
    "constant": lambda c, total, n: Constant(c.eta),
    "step": lambda c, total, n: StepDecay(c.eta, c.step_size, c.gamma),
    "linear": lambda c, total, n: LinearDecay(c.eta, max(total, 1)),
    "cosine": lambda c, total, n: Cosine(c.eta, max(total, 1)),
}


def make_schedule(cfg: Any, n_train: int) -> Schedule:
    """The learning-rate schedule of configuration ``cfg`` for ``n_train`` training rows."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(
            f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}"
        )
    return SCHEDULES[cfg.schedule](cfg, cfg.total_updates(n_train), n_train)
