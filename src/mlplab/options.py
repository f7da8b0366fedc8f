"""Options as data: each component declares its options, one validator reads them.

In the spirit of scikit-learn's ``_parameter_constraints``: a layer, optimiser, schedule or
augmentation lists its options in a class attribute ``options: dict[str, Option]``; the
recipe reader parses ``--set`` text by the declared type, and :func:`check_options` checks
every value against its declaration, with an error that names the component, the option and
the valid range. Rules that tie two options together (``eta_min <= eta_max``) stay in the
component's ``check(values)``.

    options = {"momentum": Real(0.9, low=0.0, high=1.0, high_open=True, help="...")}
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlplab.errors import ConfigError

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class Option:
    """One option: its type (``float``, ``int``, ``bool`` or ``str``), default, bounds or
    choices, and a line of help."""

    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe(self) -> str:
        """The valid values in words: ``a number in [0, 1)``, ``one of a, b``."""
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        noun = "an integer" if self.kind is int else "a finite number"
        if self.low is None and self.high is None:
            return noun
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{noun} in {left}{lo}, {hi}{right}"

    def parse(self, text: str) -> Any:
        """The value of ``--set`` text (raises ``ValueError``)."""
        text = str(text).strip()
        if self.kind is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(text)
            return text.lower() in _TRUE
        return self.kind(text)

    def check(self, owner: str, name: str, value: Any) -> Any:
        """``value`` checked (ints accepted for floats, NumPy scalars for both); returns it in
        the declared type, or raises :class:`ConfigError` naming ``owner`` and ``name``."""

        def bad() -> ConfigError:
            return ConfigError(f"{owner}: {name} must be {self.describe()}, got {value!r}")

        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad()
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise bad()
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad()
        if self.kind is int and not isinstance(value, numbers.Integral):
            raise bad()
        v = self.kind(value)
        if not math.isfinite(v):
            raise bad()
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise bad()
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            raise bad()
        return v


def Real(default: float, low: float | None = None, high: float | None = None, **kw: Any) -> Option:
    """A float option (finite), with optional bounds (``low_open``/``high_open`` exclude them)."""
    return Option(float, float(default), low, high, **kw)


def Integer(default: int, low: int | None = None, high: int | None = None, **kw: Any) -> Option:
    """An integer option with optional bounds."""
    return Option(int, int(default), low, high, **kw)


def Flag(default: bool, **kw: Any) -> Option:
    """A boolean option."""
    return Option(bool, bool(default), **kw)


def Choice(default: str, choices: tuple[str, ...], **kw: Any) -> Option:
    """A string option, one of ``choices``."""
    return Option(str, default, choices=tuple(choices), **kw)


def check_options(
    owner: str, declared: Mapping[str, Option], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Every declared option's value (``values``, else its default), each checked; a name
    in ``values`` that ``owner`` does not declare is an error that lists the ones it does."""
    unknown = sorted(set(values) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise ConfigError(f"{owner} has no option {', '.join(unknown)}; its options: {known}")
    return {
        name: opt.check(owner, name, values[name] if name in values else opt.default)
        for name, opt in declared.items()
    }
