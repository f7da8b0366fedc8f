"""Search spaces (``<recipe>.space`` beside a recipe, command-line options over it): the
searched recipe fields and their intervals, the trials and trainings per stage, the fine rule.

Slot ``k`` of a stage always gets the values drawn from ``default_rng([seed, stage, k])``:
every worker on every machine computes the same ones, and a retried slot gets them back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import _HINTS, FIELDS, Config, beside_recipe, read_toml
from mlplab.errors import ConfigError
from mlplab.fileio import read_regular

STAGES, RULES = ("coarse", "fine"), ("smooth", "top-k")
Value = float | int
#: Used when a recipe has no space file: the DD2424 coarse lambda search.
DEFAULT_SPACE = {"trials": 20, "params": {"lam": {"scale": "log", "low": 1e-5, "high": 1e-1}}}
#: The keys of a space file and of its ``[fine]`` table.
SPACE_KEYS = {"description", "final", "trials", "seed", "repeats", "params", "fine"}
SPACE_KEYS |= {"sampler", "pruner"}
#: Sampler and pruner of the course's search: left out of :meth:`SearchSpec.to_dict`, so that
#: its settings (a study's, a reproduction's key) are those it has always had.
STRATEGY_DEFAULTS = {"sampler": "random", "pruner": "none"}
FINE_KEYS = {"rule", "k", "pad", "h", "trials", "set", "repeats"}


#: Fields that change the prepared split (see :func:`mlplab.train.prepared.split_key`).
SPLIT_FIELDS = ("n_train", "zca_eps")


@dataclass(frozen=True)
class Param:
    """A searched recipe field on a log or linear axis, ``low <= value <= high`` (integer
    fields are drawn as integers; ``hidden`` is one width for every hidden layer)."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool = False

    @staticmethod
    def make(name: str, scale: str, low: Any, high: Any) -> Param:
        """Build and validate a parameter of recipe field ``name``."""
        hint, what = _HINTS.get(name), f"search parameter {name!r}"
        if hint not in (int, float, list[int]) or name in ("seed", "threads"):
            raise ConfigError(f"{what} is not a numeric recipe field that can be searched")
        if name in SPLIT_FIELDS:  # every trial trains on the one split prepared for the study
            raise ConfigError(f"{what} decides the data split, which a search keeps fixed")
        if scale not in ("log", "linear"):
            raise ConfigError(f"{what}: scale must be log or linear, not {scale!r}")
        try:
            lo, hi = float(low), float(high)
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: bounds must be numbers, got {low!r}, {high!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ConfigError(f"{what}: need finite bounds low <= high, got {lo}, {hi}")
        if scale == "log" and lo <= 0:
            raise ConfigError(
                f"{what}: log-scale bounds must be positive, got {lo:g} (bounds "
                "are values, not exponents: lambda in 1e-5..1e-1 is log:1e-5:1e-1)"
            )
        if hint is not float and (lo != round(lo) or hi != round(hi)):
            raise ConfigError(f"{what}: an integer field needs integer bounds")
        return Param(name, lo, hi, scale == "log", hint is not float)

    @staticmethod
    def parse(text: str) -> Param:
        """``NAME=SCALE:LOW:HIGH``, e.g. ``lam=log:1e-5:1e-1`` or ``hidden=linear:20:100``."""
        name, sep, rest = text.partition("=")
        if not sep or rest.count(":") != 2 or not name.strip():
            raise ConfigError(f"--param expects NAME=SCALE:LOW:HIGH (lam=log:1e-5:1e-1): {text!r}")
        scale, low, high = rest.split(":")
        return Param.make(name.strip(), scale.strip(), low, high)

    def to_dict(self) -> dict[str, Any]:
        """The arguments of :meth:`make` that give this parameter back."""
        scale = "log" if self.log else "linear"
        return {"name": self.name, "scale": scale, "low": self.low, "high": self.high}

    def to_text(self) -> str:
        return f"{self.name}={'log' if self.log else 'linear'}:{self.low:g}:{self.high:g}"

    def to_scale(self, v: float) -> float:
        """Position of ``v`` on the parameter's axis (log10 for log parameters)."""
        return math.log10(v) if self.log else float(v)

    def from_scale(self, t: float) -> float:
        return 10.0**t if self.log else float(t)

    def draw(self, u: float) -> Value:
        """The value at fraction ``u`` in [0, 1) of the axis (integers: each gets its share)."""
        if not self.integer:
            t0, t1 = self.to_scale(self.low), self.to_scale(self.high)
            return min(max(self.from_scale(t0 + u * (t1 - t0)), self.low), self.high)
        lo, hi = (max(self.low - 0.5, 0.5) if self.log else self.low - 0.5), self.high + 0.5
        t0, t1 = (math.log(lo), math.log(hi)) if self.log else (lo, hi)
        v = t0 + u * (t1 - t0)
        return round(min(max(math.exp(v) if self.log else v, self.low), self.high))

    def override(self, value: Value, cfg: Config) -> str:
        """The ``--set`` text of ``value`` (a width repeats for every hidden layer of ``cfg``)."""
        if self.name == "hidden":
            return ",".join([str(int(value))] * len(cfg.hidden))
        return str(int(value)) if self.integer else repr(float(value))

    def format(self, value: Value) -> str:
        return str(int(value)) if self.integer else f"{float(value):.4g}"


def smoothed(
    param: Param, results: list[tuple[Value, float]], h: float, points: int = 401
) -> tuple[np.ndarray, np.ndarray, float]:
    """Gaussian-kernel (Nadaraya-Watson) smoothing of scores ``s_i`` along the axis:
    ``m(t) = sum_i w_i s_i / sum_i w_i``, ``w_i = exp(-(t - t_i)^2 / (2 h^2))`` (``t`` in log10
    units for log parameters). Returns a grid of parameter values between the outermost
    trials, ``m`` on it, and the noise: the standard deviation of the residuals."""
    t = np.array([param.to_scale(v) for v, _ in results])
    s = np.array([score for _, score in results])

    def m(at: np.ndarray) -> np.ndarray:
        w = np.exp(-0.5 * ((at[:, None] - t[None, :]) / h) ** 2)
        return (w @ s) / np.maximum(w.sum(1), 1e-300)

    grid = np.linspace(t.min(), t.max(), points)
    noise = float(np.std(s - m(t), ddof=1)) if len(s) > 1 else 0.0
    return np.array([param.from_scale(g) for g in grid]), m(grid), noise


@dataclass(frozen=True)
class FineRule:
    """How the fine interval of each parameter follows from the coarse scores: ``smooth``, the
    region around the peak of the smoothed scores (:func:`smoothed`, bandwidth ``h``) within
    the noise of the peak, so that no single lucky trial moves it far; ``top-k``, the span of
    the ``k`` best trials widened by ``pad`` times its width each side (one point: ``smooth``).
    Clipped to the coarse interval; integer bounds are rounded inwards."""

    kind: str = "smooth"
    h: float = 0.4
    k: int = 3
    pad: float = 0.0

    def __post_init__(self) -> None:
        finite = math.isfinite(self.h) and math.isfinite(self.pad)
        if not (finite and self.kind in RULES and self.k >= 1 and self.h > 0 and self.pad >= 0):
            raise ConfigError(
                f"invalid fine rule {self.to_text()!r}: smooth or top-k, h > 0, k >= 1, pad >= 0"
            )

    @staticmethod
    def parse(text: str) -> FineRule:
        """``smooth[:H]`` or ``top-k[:K[:PAD]]``."""
        kind, *a = [t.strip() for t in text.split(":")]
        try:
            if kind == "smooth" and len(a) <= 1:
                return FineRule("smooth", h=float(a[0]) if a else 0.4)
            if kind == "top-k" and len(a) <= 2:
                return FineRule("top-k", k=int(a[0]) if a else 3, pad=float(a[1]) if a[1:] else 0)
        except (ValueError, ConfigError):
            pass
        raise ConfigError(f"--fine-rule expects smooth[:H] or top-k[:K[:PAD]], got {text!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.kind, "h": self.h, "k": self.k, "pad": self.pad}

    def to_text(self) -> str:
        if self.kind == "top-k":
            return f"top-k:{self.k}" + (f":{self.pad:g}" if self.pad else "")
        return f"smooth:{self.h:g}"

    def interval(self, param: Param, results: list[tuple[Value, float]]) -> tuple[Value, Value]:
        """The fine interval of ``param`` from coarse ``(value, score)`` pairs in slot order."""
        ranked = sorted(results, key=lambda r: -r[1])  # stable: ties keep trial order
        ts = [param.to_scale(v) for v, _ in ranked[: self.k]]
        if self.kind == "top-k" and max(ts) > min(ts):
            w = self.pad * (max(ts) - min(ts))
            return _clip(param, param.from_scale(min(ts) - w), param.from_scale(max(ts) + w))
        if len(results) == 1:
            return _clip(param, ranked[0][0], ranked[0][0])
        grid, m, noise = smoothed(param, results, self.h)
        lo = hi = int(np.argmax(m))
        while lo > 0 and m[lo - 1] >= m.max() - noise:
            lo -= 1
        while hi < len(m) - 1 and m[hi + 1] >= m.max() - noise:
            hi += 1
        return _clip(param, float(grid[lo]), float(grid[hi]))


def _clip(param: Param, a: float, b: float) -> tuple[Value, Value]:
    a, b = max(a, param.low), min(b, param.high)
    if not param.integer:
        return float(a), float(b)
    ia, ib = math.ceil(a - 1e-9), math.floor(b + 1e-9)
    return (int(ia), int(ib)) if ia <= ib else (round(a), round(a))


@dataclass(frozen=True)
class SearchSpec:
    """A two-stage search besides its training recipe: a trial trains ``repeats``
    (``fine_repeats``) times with the recipe's seed ``s``, ``s+1``, ... and scores their mean
    validation accuracy; fine trials also apply the ``fine_set`` overrides."""

    params: tuple[Param, ...]
    trials: int = 20
    fine_trials: int = 20
    fine_rule: FineRule = field(default_factory=FineRule)
    fine_set: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    repeats: int = 1
    fine_repeats: int = 1
    final: str = ""  # the recipe that trains the best setting (the follow-up command)
    sampler: str = "random"  # canonical text (parse_sampler): random, tpe:N
    pruner: str = "none"  # canonical text (parse_pruner): none, median:S:W, halving:M:F

    def __post_init__(self) -> None:
        if parse_sampler(self.sampler) != self.sampler or parse_pruner(self.pruner) != self.pruner:
            raise ConfigError(f"not canonical: sampler {self.sampler!r}, pruner {self.pruner!r}")
        names = [p.name for p in self.params]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"the search space needs distinct parameters, got {names}")
        counts = (self.trials, self.fine_trials, self.repeats, self.fine_repeats, self.seed)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in counts):
            raise ConfigError(f"trials, repeats and seed must be integers, got {counts}")
        if min(self.trials, self.repeats, self.fine_repeats) < 1 or self.fine_trials < 0:
            raise ConfigError(f"need trials, repeats >= 1 and fine trials >= 0, got {counts[:4]}")
        if bad := sorted(k for k in self.fine_set if k in names or k not in FIELDS):
            raise ConfigError(f"fine-stage overrides of searched or unknown fields: {bad}")

    def stage_trials(self, stage: str) -> int:
        return self.trials if stage == "coarse" else self.fine_trials

    def stage_repeats(self, stage: str) -> int:
        return self.repeats if stage == "coarse" else self.fine_repeats

    @property
    def fine_differs(self) -> bool:
        """Fine trials train differently (overrides, other repeats): scores not comparable."""
        return fine_differs(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        counts = ("trials", "fine_trials", "seed", "repeats", "fine_repeats")
        return {
            "params": [p.to_dict() for p in self.params],
            **{k: getattr(self, k) for k in counts},
            "fine": self.fine_rule.to_dict(),
            "fine_set": dict(self.fine_set),
            **{k: getattr(self, k) for k, v in STRATEGY_DEFAULTS.items() if getattr(self, k) != v},
        }


SAMPLER_HELP = "random (the course's draws, the default) or tpe[:N] (N random trials first)"
PRUNER_HELP = "none (the default), median[:STARTUP[:WARMUP]] or halving[:MIN[:FACTOR]]"


def _numbers(text: str, kinds: tuple[str, ...], defaults: dict[str, tuple[int, ...]]) -> str:
    """``KIND[:A[:B]]`` with the numbers of ``defaults[KIND]`` filled in, as canonical text."""
    kind, *rest = [t.strip() for t in str(text).split(":")]
    if kind not in kinds or len(rest) > len(defaults[kind]):
        raise ValueError(text)
    nums = [int(x) for x in rest]
    return ":".join([kind, *map(str, [*nums, *defaults[kind][len(nums) :]])])


def parse_sampler(text: str) -> str:
    """``random`` or ``tpe[:N]`` as the canonical text (``tpe`` -> ``tpe:10``)."""
    try:
        canon = _numbers(text, ("random", "tpe"), {"random": (), "tpe": (10,)})
        if canon == "random" or int(canon.split(":")[1]) >= 0:
            return canon
    except ValueError:
        pass
    raise ConfigError(f"sampler must be {SAMPLER_HELP}, not {text!r}")


def parse_pruner(text: str) -> str:
    """``none``, ``median[:STARTUP[:WARMUP]]`` or ``halving[:MIN[:FACTOR]]``, canonical
    (``median`` -> ``median:5:0``, ``halving`` -> ``halving:1:3``)."""
    defaults = {"none": (), "median": (5, 0), "halving": (1, 3)}
    try:
        canon = _numbers(text, tuple(defaults), defaults)
        kind, n = canon.split(":")[0], [int(x) for x in canon.split(":")[1:]]
        if kind == "none" or (kind == "median" and min(n) >= 0) or (n[0] >= 1 and n[1] >= 2):
            return canon
    except ValueError:
        pass
    raise ConfigError(f"pruner must be {PRUNER_HELP}, not {text!r}")


def fine_differs(space: dict[str, Any]) -> bool:
    """Whether fine trials train differently (``space``: :meth:`SearchSpec.to_dict`)."""
    return bool(space.get("fine_set")) or space.get("fine_repeats", 1) != space.get("repeats", 1)


def draw(params: tuple[Param, ...], seed: int, stage: str, slot: int) -> dict[str, Value]:
    """The values of slot ``slot`` of ``stage``: independent uniform draws on each axis."""
    rng = np.random.default_rng([seed, STAGES.index(stage), slot])
    return {p.name: p.draw(float(rng.random())) for p in params}


def fine_params(
    spec: SearchSpec, coarse: list[tuple[dict[str, Value], float]]
) -> tuple[Param, ...]:
    """The coarse intervals narrowed by the fine rule; ``coarse``: (values, score) by slot."""

    def narrow(p: Param) -> Param:
        low, high = spec.fine_rule.interval(p, [(values[p.name], s) for values, s in coarse])
        return replace(p, low=float(low), high=float(high))

    return tuple(map(narrow, spec.params))


def load_spec(recipe: str, space_file: Path | None = None, **options: Any) -> SearchSpec:
    """The spec of ``recipe``: the space file ``space_file``, else ``<recipe>.space`` beside the
    recipe, else :data:`DEFAULT_SPACE`; ``options`` as for :func:`build_spec`."""
    path = space_file or beside_recipe(recipe, ".space")
    if isinstance(path, Path):  # a FIFO or a device would block or never end: refused first
        read_regular(path, what="search space file", max_bytes=1 << 20, error=ConfigError)
    data = read_toml(path, "search space file") if path else dict(DEFAULT_SPACE)
    if unknown := set(data) - SPACE_KEYS:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return build_spec(data, **options)


def build_spec(
    data: dict[str, Any],
    *,
    params: tuple[str, ...] | list[str] = (),
    fine_rule: str | None = None,
    fine_set: dict[str, str] | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    **options: int | None,
) -> SearchSpec:
    """A :class:`SearchSpec` from space-file ``data`` and command-line overrides: ``params``
    (``NAME=SCALE:LOW:HIGH``) replace the file's; ``options``: ``trials``, ``fine_trials``,
    ``repeats``, ``fine_repeats``, ``seed`` (``trials``, ``repeats``: of both stages unless
    the fine ones are given); ``sampler``, ``pruner`` over the file's."""
    table, fine = data.get("params", {}), data.get("fine", {})
    if not isinstance(table, dict) or not isinstance(fine, dict):
        raise ConfigError("search space: [params] and [fine] must be tables")
    plist = [Param.parse(t) for t in params]
    for name, d in ({} if params else table).items():
        if not isinstance(d, dict) or set(d) - {"scale", "low", "high"}:
            raise ConfigError(f"search space: [params.{name}] needs exactly scale, low, high")
        plist.append(Param.make(name, str(d.get("scale", "linear")), d.get("low"), d.get("high")))
    if unknown := set(fine) - FINE_KEYS:
        raise ConfigError(f"unknown key(s) in [fine]: {', '.join(sorted(unknown))}")
    try:
        h, k, pad = float(fine.get("h", 0.4)), int(fine.get("k", 3)), float(fine.get("pad", 0.0))
        kind = str(fine.get("rule", "smooth"))
        rule = FineRule.parse(fine_rule) if fine_rule else FineRule(kind, h=h, k=k, pad=pad)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid [fine] settings: {fine!r}") from None
    o = {k: v for k, v in options.items() if v is not None}
    trials = o.get("trials", data.get("trials", 20))
    repeats = o.get("repeats", data.get("repeats", 1))
    return SearchSpec(
        tuple(plist),
        trials=trials,
        fine_trials=o.get("fine_trials", o.get("trials", fine.get("trials", trials))),
        fine_rule=rule,
        fine_set={str(k): _text(v) for k, v in fine.get("set", {}).items()} | (fine_set or {}),
        seed=o.get("seed", data.get("seed", 0)),
        repeats=repeats,
        fine_repeats=o.get("fine_repeats", o.get("repeats", fine.get("repeats", repeats))),
        final=str(data.get("final", "")),
        sampler=parse_sampler(sampler or data.get("sampler", "random")),
        pruner=parse_pruner(pruner or data.get("pruner", "none")),
    )


def _text(v: Any) -> str:
    """A TOML value of ``[fine] set`` as ``--set`` text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)
