"""Experiment configuration: a flat dataclass read from TOML recipes, with overrides.

A recipe is a TOML file of ``key = value`` pairs, every key a field of :class:`Config` or
an option that a component declares (``beta2`` of Adam, ``cutout``, ...: those are kept in
``Config.options``; each component checks its own, see :mod:`mlplab.train.build`).
``base = "assignment2/ex3"`` starts from another recipe.
Shipped recipes live in ``mlplab/recipes`` and are named by their path without
``.toml``; any other path to a TOML file works too. ``--set key=value`` overrides
a field after loading (the value is parsed by the field's type; lists as ``50,50``).
Files of the same name beside a recipe (its search space, ``<recipe>.space``) are found by
:func:`beside_recipe` and read, like recipes, by :func:`read_toml`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, get_type_hints

from mlplab.errors import ConfigError
from mlplab.fileio import read_regular

#: The smallest whitening eps: below it the directions of almost no variance (rounding
#: noise) would be amplified by more than 1 / sqrt(eps) = 100.
MIN_ZCA_EPS = 1e-4


@dataclass
class Config:
    """Every setting of a training run (``n_s``, ``step_size``, ``record_every`` in updates)."""

    name: str = ""
    description: str = ""
    # data
    split: str = "batch"  # batch | 45k | 49k | all | "NTRAIN/NVAL"
    n_train: int = 0  # keep only the first n_train training samples (0: all)
    zca_eps: float = 0.0  # ZCA-whiten with this eps, fitted on the training split (0: off)
    size: list[int] = field(default_factory=list)  # [height, width]: resize images (or [])
    # model
    hidden: list[int] = field(default_factory=lambda: [50])
    activation: str = "relu"  # between the hidden layers of the shorthand (ACTIVATIONS)
    layers: list[Any] = field(default_factory=list)  # the hidden part as layer specs, else []
    init: str = "course"  # course | he | xavier | normal
    init_sigma: float = 0.0  # std of every weight for init = "normal"
    batch_norm: bool = False
    bn_position: str = "before_relu"  # before_relu | after_relu
    bn_alpha: float = 0.9
    drop_prob: float = 0.0
    dtype: str = "float32"
    # objective
    lam: float = 0.0  # L2: cost = loss + lam * sum ||W||^2
    label_smoothing: float = 0.0
    # optimisation
    optimizer: str = "sgd"  # sgd | momentum | nesterov | adam (AdamW with weight_decay)
    momentum: float = 0.9
    weight_decay: float = 0.0  # decoupled (AdamW-style), on dense weights
    batch_size: int = 100
    schedule: str = "cyclic"  # cyclic | constant | step | linear | cosine
    eta: float = 0.01  # rate of constant schedule; start of step/linear/cosine
    eta_min: float = 1e-5  # cyclic
    eta_max: float = 1e-1  # cyclic
    n_s: int = 500  # cyclic step size
    n_s_k: float = 0.0  # if > 0: n_s = n_s_k * floor(n_train / batch_size)
    cycles: int = 1  # cyclic: number of full cycles (2 n_s updates each)
    epochs: float = 0.0  # non-cyclic schedules: training length in epochs
    step_size: int = 0  # step schedule: decay every step_size updates
    gamma: float = 0.1  # step schedule: decay factor
    # augmentation (applied on the fly to each mini-batch)
    flip: bool = False
    translate: int = 0
    noise_std: float = 0.0
    flip_average: bool = False  # predict with the mean over each test image and its mirror
    # model selection and ensembles
    snapshot_ensemble: bool = False  # keep the model at the end of every cycle (cyclic)
    keep_best: bool = False  # end with the weights of the best validation accuracy
    early_stop: int = 0  # stop after this many history points without improvement (0: off)
    # bookkeeping
    record_per_cycle: int = 10  # history points per cycle (cyclic)
    record_every: int = 0  # history every N updates (0: from record_per_cycle, or each epoch)
    record_train_samples: int = 0  # train curves on the first N training samples (0: all)
    eval_batch: int = 1000
    checkpoint_every: int = 500  # updates between checkpoints (0: only at the end)
    seed: int = 0
    threads: int = 1  # BLAS threads of training and evaluation (rounding depends on it)
    # the options of components that are not fields above (``beta2``, ``cutout``, ...)
    options: dict[str, Any] = field(default_factory=dict)

    # -- derived quantities -------------------------------------------------------------------
    def resolved_n_s(self, n_train: int) -> int | None:
        """The cyclic schedule's ``n_s`` for ``n_train`` rows (None for other schedules)."""
        from mlplab.train.build import resolved_n_s  # the schedule computes it

        return resolved_n_s(self, n_train)

    def total_updates(self, n_train: int) -> int:
        """Number of mini-batch updates of the whole run (its schedule computes it)."""
        from mlplab.train.build import total_updates

        return total_updates(self, n_train)

    def image_size(self) -> tuple[int, int] | None:
        """``size`` as ``(height, width)`` for the data reader, or None (images as stored)."""
        return (self.size[0], self.size[1]) if self.size else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d

    # -- validation ---------------------------------------------------------------------------
    def validate(self) -> Config:
        """Raise :class:`ConfigError` on any impossible value; return self."""

        def bad(msg: str) -> ConfigError:
            return ConfigError(f"recipe {self.name or '(unnamed)'}: {msg}")

        for f in fields(self):  # types first (a Config built in Python is not parsed)
            hint, v = _HINTS[f.name], getattr(self, f.name)
            if hint is bool and not isinstance(v, bool):
                raise bad(f"{f.name} must be true or false, got {v!r}")
            if hint is int and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
                raise bad(f"{f.name} must be an integer, got {v!r}")
            if hint is float and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
                raise bad(f"{f.name} must be a number, got {v!r}")
        for k in (
            "lam",
            "label_smoothing",
            "drop_prob",
            "weight_decay",
            "noise_std",
            "bn_alpha",
            "init_sigma",
            "zca_eps",
        ):
            v = getattr(self, k)
            if not math.isfinite(v):
                raise bad(f"{k} must be finite, got {v!r}")
            if v < 0:
                raise bad(f"{k} must be >= 0, got {v!r}")
        if not self.hidden or any(
            isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in self.hidden
        ):
            raise bad(f"hidden sizes must be positive integers, got {self.hidden!r}")
        if self.size and (
            len(self.size) != 2 or any(isinstance(v, bool) or not 1 <= v <= 4096 for v in self.size)
        ):
            raise bad(f"size must be [height, width] in pixels (1..4096), or [], got {self.size!r}")
        if self.batch_size < 1:
            raise bad(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_norm and self.batch_size < 2:
            raise bad("batch norm needs batch_size >= 2")
        if not self.label_smoothing < 1:
            raise bad(f"label_smoothing must be < 1, got {self.label_smoothing}")
        if not self.drop_prob < 1:
            raise bad(f"drop_prob must be < 1, got {self.drop_prob}")
        if not self.bn_alpha < 1:
            raise bad(f"bn_alpha must be < 1, got {self.bn_alpha}")
        if 0 < self.zca_eps < MIN_ZCA_EPS:
            raise bad(
                f"zca_eps must be 0 (no whitening) or at least {MIN_ZCA_EPS} (the scale of "
                f"a standardised pixel's variance is 1), got {self.zca_eps!r}"
            )
        if self.snapshot_ensemble and self.schedule != "cyclic":
            raise bad("snapshot_ensemble needs the cyclic schedule (one snapshot per cycle)")
        for k in (
            "n_train",
            "record_every",
            "record_train_samples",
            "seed",
            "checkpoint_every",
            "early_stop",
        ):
            if getattr(self, k) < 0:
                raise bad(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.threads < 1 or self.threads > 256:
            raise bad(f"threads (BLAS threads) must be in 1..256, got {self.threads}")
        if self.record_per_cycle < 1 or self.eval_batch < 1:
            raise bad("record_per_cycle and eval_batch must be >= 1")
        if self.dtype not in ("float32", "float64"):
            raise bad(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not isinstance(self.options, dict) or not isinstance(self.layers, list):
            raise bad("options must be a table and layers a list")
        from mlplab.train.build import check_components  # each component checks its options

        try:
            check_components(self)
        except ConfigError as e:
            raise bad(str(e)) from None
        return self


_HINTS = get_type_hints(Config)
FIELDS = {f.name for f in fields(Config)}


def _declaration(key: str) -> Any:
    """The option some component declares as ``key`` (:func:`mlplab.train.build.declaration`)."""
    from mlplab.train.build import declaration

    return declaration(key)


def _option(key: str, value: Any, *, from_text: bool) -> Any:
    """A component option (not a field): parsed by its declared type, or one error."""
    opt = _declaration(key)
    if opt is None:
        known = ", ".join(sorted(FIELDS - {"options"}))
        raise ConfigError(
            f"unknown recipe key {key!r}; known keys: {known}, and the options of the "
            "optimizers, schedules and augmentations (mlplab recipes --options lists them)"
        )
    try:
        return opt.check("recipe", key, opt.parse(value) if from_text else value)
    except ValueError:
        raise ConfigError(f"recipe key {key!r} expects {opt.describe()}, got {value!r}") from None


def _toml_value(text: str) -> Any:
    """A TOML value written on the command line (``[{dense = 64}, "gelu"]``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise ValueError(str(e)) from None


def _coerce(key: str, value: Any, *, from_text: bool) -> Any:
    """Check (TOML) or parse (``--set`` text) ``value`` for field ``key``."""
    if key not in FIELDS:
        raise ConfigError(f"unknown recipe key {key!r}; known keys: {', '.join(sorted(FIELDS))}")
    hint = _HINTS[key]
    try:
        if key == "options":  # run.json: the component options, each by its declaration
            if not isinstance(value, dict):
                raise ValueError
            return {k: _option(k, v, from_text=False) for k, v in value.items()}
        if hint == list[Any]:  # layers: TOML's list of kinds and tables
            value = _toml_value(str(value)) if from_text else value
            if not isinstance(value, list):
                raise ValueError
            return list(value)
        if hint is bool:
            if from_text:
                low = str(value).strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError
            return value
        if hint is int:
            if from_text:
                return int(str(value).strip())
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            return value
        if hint is float:
            if from_text:
                return float(str(value).strip())
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError
            return float(value)
        if hint == list[int]:
            if from_text:
                text = str(value).strip().strip("[]").replace(" ", "")
                if key == "size":  # 24,24 or 24x24 or 24 (a square)
                    text = text.lower().replace("x", ",")
                parts = text.split(",") if text else []
                out = [int(t) for t in parts if t or key == "size"]  # size: no empty part
                return out * 2 if key == "size" and len(out) == 1 else out
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ValueError
            return list(value)
        if hint is str:
            if not from_text and not isinstance(value, str):
                raise ValueError
            return str(value)
    except ValueError:
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"recipe key {key!r} expects {kind}, got {value!r}") from None
    raise AssertionError(f"unhandled type for {key}")


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package (``assignment2/ex3``, ...)."""
    root = resources.files("mlplab") / "recipes"
    names: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".toml"):
                names.append(prefix + child.name[: -len(".toml")])

    walk(root, "")
    return sorted(names)


def _is_path(name_or_path: str) -> bool:
    """A recipe given as a file (a ``.toml`` name or an existing path), not a shipped name."""
    return Path(name_or_path).suffix == ".toml" or Path(name_or_path).exists()


def beside_recipe(name_or_path: str, suffix: str) -> Path | Traversable | None:
    """The file of the recipe's name with another ``suffix`` (``.space``) beside it, if any."""
    if _is_path(name_or_path):
        path: Path | Traversable = Path(name_or_path).with_suffix(suffix)
    else:
        path = resources.files("mlplab") / "recipes" / f"{name_or_path}{suffix}"
    if path.is_file():
        return path
    if isinstance(path, Path) and (path.exists() or path.is_symlink()):
        raise ConfigError(f"{path} is not a readable file (a directory or a broken link)")
    return None


def read_toml(path: Path | Traversable, what: str, label: str = "") -> dict[str, Any]:
    """The table of TOML file ``path`` (a ``what``, named ``label`` in errors: else its path)."""
    label = label or str(path)
    try:
        if isinstance(path, Path):  # a user's file: regular, at most 1 MiB (never a FIFO)
            data = read_regular(path, what=what, max_bytes=1 << 20, error=ConfigError)
            text = data.decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} {label}: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {label} is not valid TOML: {e}") from None


def _read_toml(name_or_path: str) -> tuple[dict[str, Any], str]:
    if _is_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            if path.exists():
                raise ConfigError(f"recipe {path} is not a regular file (a directory or a FIFO)")
            raise ConfigError(f"recipe file not found: {path}")
        return read_toml(path, "recipe"), str(path)
    res = resources.files("mlplab") / "recipes" / f"{name_or_path}.toml"
    if not res.is_file():
        raise ConfigError(
            f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(recipe_names())}"
        )
    return read_toml(res, "recipe", name_or_path), name_or_path


def load_recipe(name_or_path: str, overrides: dict[str, str] | None = None) -> Config:
    """Load a shipped recipe by name or a TOML file by path, apply ``overrides``, validate."""
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}  # the components' own options, by name
    seen: list[str] = []
    current: str | None = name_or_path
    while current is not None:
        if current in seen:
            raise ConfigError(f"recipe inheritance loops: {' -> '.join([*seen, current])}")
        seen.append(current)
        data, label = _read_toml(current)
        base = data.pop("base", None)
        for k, v in data.items():
            if isinstance(v, dict):
                raise ConfigError(f"recipe {label}: tables are not supported ([{k}])")
            if k in FIELDS and k != "options":
                values.setdefault(k, _coerce(k, v, from_text=False))
            else:
                options.setdefault(k, _option(k, v, from_text=False))
        if base is not None and not isinstance(base, str):
            raise ConfigError(f"recipe {label}: base must be a recipe name, got {base!r}")
        current = base
    values.setdefault(
        "name", name_or_path if not name_or_path.endswith(".toml") else Path(name_or_path).stem
    )
    cfg = apply_overrides(Config(**values, options=options), overrides or {})
    from mlplab.train.build import unused_options  # what the recipe files wrote

    try:
        unused_options(cfg, values)
    except ConfigError as e:
        raise ConfigError(f"recipe {cfg.name or name_or_path}: {e}") from None
    return cfg


def config_from_dict(d: dict[str, Any]) -> Config:
    """A configuration from a dict (``run.json``), every value type-checked as in a recipe."""
    if not isinstance(d, dict):
        raise ConfigError(f"a configuration must be a table, not {type(d).__name__}")
    return Config(**{k: _coerce(k, v, from_text=False) for k, v in d.items()}).validate()


def apply_overrides(cfg: Config, overrides: dict[str, Any], *, from_text: bool = True) -> Config:
    """A copy of ``cfg`` with overrides applied (text parsed by each key's type, or Python
    values checked with ``from_text=False``), validated. A key that is not a field is a
    component's option (``beta2``) and goes into ``options``."""
    changes = {
        k: _coerce(k, v, from_text=from_text)
        for k, v in overrides.items()
        if k in FIELDS and k != "options"
    }
    options = dict(cfg.options)
    for k, v in overrides.items():
        if k not in FIELDS or k == "options":
            options[k] = _option(k, v, from_text=from_text)
    out = dataclasses.replace(cfg, **changes, options=options).validate()
    from mlplab.train.build import unused_options  # what the overrides wrote

    try:
        unused_options(out, changes)
    except ConfigError as e:
        raise ConfigError(f"recipe {out.name or '(unnamed)'}: {e}") from None
    return out


def parse_set_options(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["lam=0.01", "hidden=50,50"]`` -> ``{"lam": "0.01", "hidden": "50,50"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value
    return out
