"""Search spaces: which recipe fields are searched over which interval, and the fine-stage rule.

A *search spec* says, for a training recipe, which numeric fields are searched
(each on a log or linear scale between two bounds), how many trials each stage
runs, and how the fine stage's interval is derived from the coarse results.
It is read from a TOML file next to the recipe (``<recipe>.space``, e.g.
``recipes/assignment2/search.space``) and can be overridden on the command line.

Trial ``slot`` of a stage always gets the same parameters: they are drawn from
``numpy.random.default_rng([seed, stage, slot])``.  Any worker on any machine
therefore computes the same parameters for a slot, a re-tried slot gets its
parameters back, and a search gives the same trials however many workers ran
it and however often it was interrupted.  The fine interval is a deterministic
function of the coarse results, so the fine stage is reproducible as well.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import _HINTS, FIELDS, Config
from mlplab.errors import ConfigError

SCALES = ("log", "linear")
RULES = ("top-k", "around-best")
STAGES = ("coarse", "fine")

#: Used when a recipe has no space file: the DD2424 coarse lambda search.
DEFAULT_SPACE: dict[str, Any] = {
    "trials": 20,
    "seed": 0,
    "params": {"lam": {"scale": "log", "low": 1e-5, "high": 1e-1}},
    "fine": {"rule": "top-k", "k": 3, "pad": 0.0, "fraction": 0.2},
}

Value = float | int


@dataclass(frozen=True)
class Param:
    """One searched recipe field: ``low <= value <= high`` on a log or linear scale.

    ``integer`` follows the field's type (``hidden``, a list of widths, is searched as
    one integer width applied to every hidden layer).
    """

    name: str
    low: float
    high: float
    log: bool
    integer: bool = False

    @staticmethod
    def make(name: str, scale: str, low: float, high: float) -> Param:
        """Build and validate a parameter of recipe field ``name``."""
        if name not in FIELDS:
            raise ConfigError(
                f"search parameter {name!r} is not a recipe field; "
                f"known: {', '.join(sorted(FIELDS))}"
            )
        hint = _HINTS[name]
        if hint is bool or hint not in (int, float, list[int]):
            raise ConfigError(f"search parameter {name!r} is not numeric and cannot be searched")
        if name in ("seed", "name", "description"):
            raise ConfigError(f"search parameter {name!r} cannot be searched")
        if scale not in SCALES:
            raise ConfigError(
                f"search parameter {name}: scale must be log or linear, not {scale!r}"
            )
        try:
            lo, hi = float(low), float(high)
        except (TypeError, ValueError):
            raise ConfigError(f"search parameter {name}: bounds must be numbers") from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ConfigError(
                f"search parameter {name}: need finite bounds low <= high, got {lo}, {hi}"
            )
        if scale == "log" and lo <= 0:
            raise ConfigError(
                f"search parameter {name}: log-scale bounds must be positive values, got {lo:g} "
                f"(bounds are values, not exponents: lambda in 1e-5..1e-1 is log:1e-5:1e-1)"
            )
        integer = hint is not float
        if integer:
            if lo != round(lo) or hi != round(hi):
                raise ConfigError(f"search parameter {name}: integer field needs integer bounds")
            lo, hi = float(round(lo)), float(round(hi))
        return Param(name, lo, hi, scale == "log", integer)

    @staticmethod
    def parse(text: str) -> Param:
        """Parse ``NAME=SCALE:LOW:HIGH``, e.g. ``lam=log:1e-5:1e-1`` or ``hidden=linear:20:100``."""
        name, sep, rest = text.partition("=")
        parts = rest.split(":")
        if not sep or len(parts) != 3 or not name.strip():
            raise ConfigError(
                f"--param expects NAME=SCALE:LOW:HIGH (e.g. lam=log:1e-5:1e-1), got {text!r}"
            )
        return Param.make(name.strip(), parts[0].strip(), parts[1], parts[2])

    @property
    def scale(self) -> str:
        return "log" if self.log else "linear"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.scale, "low": self.low, "high": self.high}

    def to_text(self) -> str:
        return f"{self.name}={self.scale}:{self.low:g}:{self.high:g}"

    def forward(self, v: float) -> float:
        """Position of ``v`` on the parameter's scale (log10 or identity)."""
        return math.log10(v) if self.log else float(v)

    def backward(self, t: float) -> float:
        return 10.0**t if self.log else float(t)

    def clip(self, v: float) -> Value:
        v = min(max(v, self.low), self.high)
        return round(v) if self.integer else float(v)

    def draw(self, u: float) -> Value:
        """The value at fraction ``u`` in [0, 1) of the interval, on the parameter's scale."""
        if self.integer:  # uniform over the integers (in log: over the log-range of the integers)
            lo, hi = self.low - 0.5, self.high + 0.5
            if self.log:
                lo, hi = max(self.low - 0.5, 0.5), self.high + 0.5
                return self.clip(round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))))
            return self.clip(round(lo + u * (hi - lo)))
        t0, t1 = self.forward(self.low), self.forward(self.high)
        return self.clip(self.backward(t0 + u * (t1 - t0)))

    def distribution(self) -> Any:
        """The Optuna distribution of this parameter (stored with every trial)."""
        from optuna.distributions import FloatDistribution, IntDistribution

        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def override(self, value: Value, cfg: Config) -> str:
        """The ``--set`` text of ``value`` for ``cfg`` (a width repeats for every hidden layer)."""
        if self.name == "hidden":
            return ",".join([str(int(value))] * len(cfg.hidden))
        if self.integer:
            return str(int(value))
        return repr(float(value))

    def format(self, value: Value) -> str:
        """Short human form of a value (4 significant digits)."""
        return str(int(value)) if self.integer else f"{float(value):.4g}"


@dataclass(frozen=True)
class FineRule:
    """How the fine stage's interval of each parameter comes from the coarse results.

    ``top-k``: the span (on the parameter's scale, i.e. in log space for log
    parameters) of the ``k`` best coarse trials, widened by ``pad`` times its width
    on each side. If the span is a single point (k = 1 or equal values) the
    ``around-best`` interval is used instead.

    ``around-best``: ``best * (1 - fraction)`` .. ``best * (1 + fraction)`` (±20 % by
    default) around the best coarse value; for a best value of 0 (linear scale),
    ``± fraction`` of the coarse interval's width.

    Either way the result is clipped to the coarse interval, and integer parameters
    are rounded inwards (never to an empty interval).
    """

    kind: str = "top-k"
    k: int = 3
    pad: float = 0.0
    fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ConfigError(f"fine rule must be one of {', '.join(RULES)}, not {self.kind!r}")
        if self.k < 1:
            raise ConfigError(f"fine rule top-k needs k >= 1, got {self.k}")
        if not (math.isfinite(self.pad) and self.pad >= 0):
            raise ConfigError(f"fine rule pad must be >= 0, got {self.pad}")
        if not (math.isfinite(self.fraction) and 0 < self.fraction < 1):
            raise ConfigError(f"fine rule fraction must be in (0, 1), got {self.fraction}")

    @staticmethod
    def parse(text: str) -> FineRule:
        """``top-k``, ``top-k:K``, ``top-k:K:PAD``, ``around-best`` or ``around-best:FRACTION``."""
        kind, *args = [t.strip() for t in text.split(":")]
        try:
            if kind == "top-k" and len(args) <= 2:
                return FineRule(
                    "top-k",
                    k=int(args[0]) if args else 3,
                    pad=float(args[1]) if len(args) > 1 else 0.0,
                )
            if kind == "around-best" and len(args) <= 1:
                return FineRule("around-best", fraction=float(args[0]) if args else 0.2)
        except ValueError:
            pass
        raise ConfigError(
            f"--fine-rule expects top-k[:K[:PAD]] or around-best[:FRACTION], got {text!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.kind, "k": self.k, "pad": self.pad, "fraction": self.fraction}

    def to_text(self) -> str:
        if self.kind == "top-k":
            return f"top-k:{self.k}" + (f":{self.pad:g}" if self.pad else "")
        return f"around-best:{self.fraction:g}"

    def interval(self, param: Param, results: list[tuple[Value, float]]) -> tuple[Value, Value]:
        """The fine interval of ``param`` from coarse ``(value, score)`` pairs (higher is better).

        Ties in score keep the order of ``results`` (the first one counts as better).
        """
        if not results:
            raise ConfigError("no finished coarse trial to derive the fine interval from")
        ranked = sorted(results, key=lambda r: -r[1])  # stable: ties keep trial order
        best = ranked[0][0]
        lo_t, hi_t = param.forward(param.low), param.forward(param.high)
        if self.kind == "top-k":
            ts = [param.forward(v) for v, _ in ranked[: self.k]]
            a, b = min(ts), max(ts)
            if b > a:
                w = b - a
                return self._finish(
                    param,
                    param.backward(max(a - self.pad * w, lo_t)),
                    param.backward(min(b + self.pad * w, hi_t)),
                    best,
                )
        # around-best (also the fallback of a one-point top-k span)
        if best == 0:
            half = self.fraction * (param.high - param.low)
            a, b = -half, half
        else:
            a, b = sorted((best * (1 - self.fraction), best * (1 + self.fraction)))
        return self._finish(param, max(a, param.low), min(b, param.high), best)

    @staticmethod
    def _finish(param: Param, a: float, b: float, best: Value) -> tuple[Value, Value]:
        a, b = max(a, param.low), min(b, param.high)
        if param.integer:
            ia, ib = math.ceil(a - 1e-9), math.floor(b + 1e-9)
            if ia > ib:
                ia = ib = int(best)
            return int(ia), int(ib)
        return float(a), float(b)


@dataclass(frozen=True)
class SearchSpec:
    """Everything that defines a two-stage search besides the training recipe."""

    params: tuple[Param, ...]
    trials: int = 20
    fine_trials: int = 20
    fine_rule: FineRule = field(default_factory=FineRule)
    fine_set: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    repeats: int = 1
    fine_repeats: int = 1

    def __post_init__(self) -> None:
        if not self.params:
            raise ConfigError("the search space has no parameter")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ConfigError(f"search parameters repeat a field: {', '.join(names)}")
        if self.trials < 1:
            raise ConfigError(f"trials per stage must be >= 1, got {self.trials}")
        if self.fine_trials < 0:
            raise ConfigError(f"fine trials must be >= 0, got {self.fine_trials}")
        for what, n in (("repeats", self.repeats), ("fine repeats", self.fine_repeats)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(f"{what} (trainings per trial) must be an integer >= 1: {n!r}")
        clash = sorted(set(self.fine_set) & set(names))
        if clash:
            raise ConfigError(f"fine-stage overrides set searched fields: {', '.join(clash)}")
        for k in self.fine_set:
            if k not in FIELDS:
                raise ConfigError(f"fine-stage override of unknown recipe field {k!r}")

    def stage_trials(self, stage: str) -> int:
        return self.trials if stage == "coarse" else self.fine_trials

    def stage_repeats(self, stage: str) -> int:
        """Trainings per trial (seeds ``seed``, ``seed + 1``, ...) in ``stage``."""
        return self.repeats if stage == "coarse" else self.fine_repeats

    @property
    def fine_differs(self) -> bool:
        """Whether fine trials train differently from coarse ones (scores not comparable)."""
        return fine_trains_differently(self.fine_set, self.repeats, self.fine_repeats)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": [p.to_dict() for p in self.params],
            "trials": self.trials,
            "fine_trials": self.fine_trials,
            "fine": self.fine_rule.to_dict(),
            "fine_set": dict(self.fine_set),
            "seed": self.seed,
            "repeats": self.repeats,
            "fine_repeats": self.fine_repeats,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SearchSpec:
        return SearchSpec(
            params=tuple(
                Param.make(p["name"], p["scale"], p["low"], p["high"]) for p in d["params"]
            ),
            trials=int(d["trials"]),
            fine_trials=int(d["fine_trials"]),
            fine_rule=_rule_from(d.get("fine", {})),
            fine_set={str(k): str(v) for k, v in d.get("fine_set", {}).items()},
            seed=int(d.get("seed", 0)),
            repeats=int(d.get("repeats", 1)),
            fine_repeats=int(d.get("fine_repeats", d.get("repeats", 1))),
        )


def fine_trains_differently(fine_set: dict[str, Any], repeats: int, fine_repeats: int) -> bool:
    """Fine trials with recipe overrides or another number of trainings per trial than
    the coarse ones: their scores are not comparable with the coarse scores."""
    return bool(fine_set) or fine_repeats != repeats


def _rule_from(d: dict[str, Any]) -> FineRule:
    unknown = set(d) - {"rule", "k", "pad", "fraction", "trials", "set", "repeats"}
    if unknown:
        raise ConfigError(f"unknown key(s) in [fine]: {', '.join(sorted(unknown))}")
    try:
        return FineRule(
            str(d.get("rule", "top-k")),
            k=int(d.get("k", 3)),
            pad=float(d.get("pad", 0.0)),
            fraction=float(d.get("fraction", 0.2)),
        )
    except (TypeError, ValueError):
        raise ConfigError(f"invalid [fine] settings: {d!r}") from None


def draw(params: tuple[Param, ...], seed: int, stage: str, slot: int) -> dict[str, Value]:
    """The parameters of trial ``slot`` of ``stage``: independent uniform draws on each scale."""
    rng = np.random.default_rng([seed, STAGES.index(stage), slot])
    return {p.name: p.draw(float(rng.random())) for p in params}


def fine_params(
    spec: SearchSpec, coarse: list[tuple[dict[str, Value], float]]
) -> tuple[Param, ...]:
    """The fine-stage parameters: each coarse interval narrowed by ``spec.fine_rule``.

    ``coarse`` holds ``(params, score)`` of the finished coarse trials in trial order.
    """
    out = []
    for p in spec.params:
        lo, hi = spec.fine_rule.interval(p, [(t[p.name], s) for t, s in coarse])
        out.append(replace(p, low=float(lo), high=float(hi)))
    return tuple(out)


def trial_overrides(
    cfg: Config, params: tuple[Param, ...], values: dict[str, Value]
) -> dict[str, str]:
    """``--set``-style text overrides for a trial's parameter values."""
    return {p.name: p.override(values[p.name], cfg) for p in params}


# ------------------------------------------------------------------------- space files


def space_file_for(recipe: str) -> Path | Any | None:
    """The space file that goes with ``recipe`` (``<recipe>.space``), or ``None``."""
    path = Path(recipe)
    if path.suffix == ".toml" or path.exists():
        cand = path.with_suffix(".space")
        return cand if cand.is_file() else None
    res = resources.files("mlplab") / "recipes" / f"{recipe}.space"
    return res if res.is_file() else None


def read_space_file(source: Path | Any | None) -> dict[str, Any]:
    """Parse a space file (TOML) into a plain dict, or the default space for ``None``."""
    if source is None:
        return dict(DEFAULT_SPACE)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read search space file {source}: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"search space file {source} is not valid TOML: {e}") from None
    unknown = set(data) - {"description", "final", "trials", "seed", "repeats", "params", "fine"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    return data


def build_spec(
    data: dict[str, Any],
    *,
    params: list[str] | tuple[str, ...] = (),
    trials: int | None = None,
    fine_trials: int | None = None,
    fine_rule: str | None = None,
    fine_set: dict[str, str] | None = None,
    seed: int | None = None,
    repeats: int | None = None,
    fine_repeats: int | None = None,
    label: str = "search space",
) -> SearchSpec:
    """A :class:`SearchSpec` from space-file data and command-line overrides.

    ``params`` (``NAME=SCALE:LOW:HIGH`` texts), when given, replace the file's
    parameters entirely. ``trials`` sets both stages unless ``fine_trials`` is given;
    ``repeats`` likewise sets both stages unless ``fine_repeats`` is given.
    """
    if params:
        plist = tuple(Param.parse(t) for t in params)
    else:
        raw = data.get("params", {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{label}: [params] must be a table of tables")
        plist = []
        for name, d in raw.items():
            if not isinstance(d, dict) or set(d) - {"scale", "low", "high"}:
                raise ConfigError(
                    f"{label}: [params.{name}] needs exactly scale, low, high, got {d!r}"
                )
            plist.append(
                Param.make(name, str(d.get("scale", "linear")), d.get("low"), d.get("high"))
            )
        plist = tuple(plist)
    fine = data.get("fine", {})
    if not isinstance(fine, dict):
        raise ConfigError(f"{label}: [fine] must be a table")
    rule = FineRule.parse(fine_rule) if fine_rule else _rule_from(fine)
    n = int(trials if trials is not None else data.get("trials", 20))
    nf = (
        fine_trials
        if fine_trials is not None
        else (trials if trials is not None else fine.get("trials", n))
    )
    fset = {str(k): _text(v) for k, v in fine.get("set", {}).items()}
    if fine_set is not None:
        fset.update(fine_set)
    r = repeats if repeats is not None else data.get("repeats", 1)
    rf = (
        fine_repeats
        if fine_repeats is not None
        else (repeats if repeats is not None else fine.get("repeats", r))
    )
    for what, v in (("repeats", r), ("[fine] repeats", rf)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{label}: {what} must be an integer, not {v!r}")
    return SearchSpec(
        params=plist,
        trials=n,
        fine_trials=int(nf),
        fine_rule=rule,
        fine_set=fset,
        seed=int(seed if seed is not None else data.get("seed", 0)),
        repeats=r,
        fine_repeats=rf,
    )


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)
