"""A run's parts from its recipe: network, optimiser, schedule and augmentations.

The components are found in their registries (:data:`~mlplab.nn.layers.LAYERS` and
:data:`~mlplab.nn.activations.ACTIVATIONS`, :data:`~mlplab.optim.optimizers.OPTIMIZERS`,
:data:`~mlplab.optim.schedules.SCHEDULES`, :data:`~mlplab.data.augment.AUGMENTATIONS`,
:data:`~mlplab.nn.init.INITS`), and each declares and checks its own options. An option is a
:class:`~mlplab.config.Config` field when the course already had it (``momentum``,
``eta_min``, ``translate``, ...); any other option (``beta2``, ``cutout``, ...) lives in
``Config.options`` and is set in a recipe or with ``--set`` by its name alone.

:func:`check_components` is what ``Config.validate`` runs for them, so that a bad name or
value fails when the recipe is read, not when training starts.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.data.augment import AUGMENTATIONS, Augmentation, make_augmentations
from mlplab.errors import ConfigError
from mlplab.images import ImageShape
from mlplab.nn.activations import ACTIVATIONS
from mlplab.nn.init import INITS
from mlplab.nn.layers import Layer
from mlplab.nn.network import Network
from mlplab.nn.specs import check_recipe_size, layer_kinds, shorthand
from mlplab.optim.optimizers import OPTIMIZERS, Optimizer, make_optimizer
from mlplab.optim.schedules import SCHEDULES, Cyclic, Schedule
from mlplab.options import Option, check_options

#: A class that declares recipe options: an optimiser, a schedule, an augmentation or a layer.
Component = type[Optimizer] | type[Schedule] | type[Augmentation] | type[Layer]

_FIELDS = {f.name for f in fields(Config)}
_DEFAULTS = {f.name: f.default for f in fields(Config)}


def _owners() -> list[tuple[str, Component]]:
    """``(owner name, class)`` of every registered optimiser, schedule and augmentation."""
    return [
        *((f"optimizer {n}", c) for n, c in OPTIMIZERS.items()),
        *((f"schedule {n}", c) for n, c in SCHEDULES.items()),
        *((f"augmentation {n}", c) for n, c in AUGMENTATIONS.items()),
    ]


def declaration(key: str) -> Option | None:
    """The :class:`~mlplab.options.Option` that some component declares as ``key`` (the
    first one found: components that share a name share its type), else None."""
    for _, cls in _owners():
        if key in cls.options:
            return cls.options[key]
    return None


def _active(cfg: Config) -> list[tuple[str, Component]]:
    """The components this configuration uses (every augmentation: their switches decide)."""
    return [
        (f"optimizer {cfg.optimizer}", OPTIMIZERS[cfg.optimizer]),
        (f"schedule {cfg.schedule}", SCHEDULES[cfg.schedule]),
        *((f"augmentation {n}", c) for n, c in AUGMENTATIONS.items()),
    ]


def values_for(cfg: Config, cls: Component) -> dict[str, Any]:
    """The values of ``cls``'s options in ``cfg``: its field, else ``cfg.options``, else the
    declared default."""
    out = {}
    for name, opt in cls.options.items():
        if name in _FIELDS:
            out[name] = getattr(cfg, name)
        else:
            out[name] = cfg.options.get(name, opt.default)
    return out


def check_components(cfg: Config) -> None:
    """Check every component ``cfg`` names and its options; raise :class:`ConfigError`."""
    for field, known in (
        ("optimizer", OPTIMIZERS),
        ("schedule", SCHEDULES),
        ("init", INITS),
        ("activation", ACTIVATIONS),
    ):
        if getattr(cfg, field) not in known:
            raise ConfigError(
                f"{field} must be one of {', '.join(known)}, got {getattr(cfg, field)!r}"
            )
    for owner, cls in _active(cfg):  # an augmentation that is off: its values still in range
        values = check_options(owner, cls.options, values_for(cfg, cls))
        check = getattr(cls, "check", None)  # rules between a schedule's options
        if check is not None:
            check(values)
    unused_options(cfg, cfg.options)
    if cfg.init == "normal" and cfg.init_sigma <= 0:
        raise ConfigError("init 'normal' needs init_sigma > 0")
    if cfg.bn_position not in ("before_relu", "after_relu"):
        raise ConfigError(f"bn_position must be before_relu or after_relu, got {cfg.bn_position!r}")
    resolved = check_recipe_size(
        cfg.layers
        or shorthand(
            cfg.hidden, activation=cfg.activation, batch_norm=cfg.batch_norm,
            bn_position=cfg.bn_position, drop_prob=cfg.drop_prob,
        )
    )  # fmt: skip
    uses_bn = cfg.batch_norm or any(s["kind"] == "batchnorm" for s in resolved)
    if uses_bn and cfg.batch_size < 2:
        raise ConfigError("batch norm needs batch_size >= 2")


def unused_options(cfg: Config, keys: Any) -> None:
    """Refuse each of ``keys`` (options a recipe or ``--set`` wrote) that only components
    ``cfg`` does not use declare: ``--set beta2=0.9`` with SGD, ``momentum = 0.5`` with
    Adam. (A field left at its default is not counted as written.)"""
    used = {name for _, cls in _active(cfg) for name in cls.options}
    for key in keys:
        if key in _FIELDS and (key == "options" or getattr(cfg, key) == _DEFAULTS.get(key)):
            continue
        if key in _FIELDS and not any(key in c.options for _, c in _owners()):
            continue  # a field of the run itself (lam, hidden, ...)
        if key not in used:
            owners = [o for o, c in _owners() if key in c.options]
            if not owners:
                raise ConfigError(f"option {key!r} belongs to no registered component")
            raise ConfigError(
                f"option {key!r} belongs to {', '.join(owners)}, which this recipe does not use"
            )


def component_options() -> list[tuple[str, str, Option]]:
    """``(component, option, declaration)`` of every registered optimiser, schedule,
    augmentation and layer kind (``mlplab recipes --options`` prints them)."""
    owners = [*_owners(), *((f"layer {k}", cls) for k, cls in layer_kinds().items())]
    rows = []
    for owner, cls in owners:
        rows += [(owner, name, opt) for name, opt in cls.options.items()]
        if not cls.options:
            rows.append((owner, "", Option(str, "")))
    return rows


# -- the parts ------------------------------------------------------------------------------
def total_updates(cfg: Config, n_train: int) -> int:
    """The number of mini-batch updates of the run on ``n_train`` rows (its schedule's)."""
    cls = SCHEDULES[cfg.schedule]
    return cls.updates(values_for(cfg, cls), n_train, cfg.batch_size)


def resolved_n_s(cfg: Config, n_train: int) -> int | None:
    """The cyclic schedule's half-cycle ``n_s`` for ``n_train`` rows (None for the others)."""
    cls = SCHEDULES[cfg.schedule]
    if not issubclass(cls, Cyclic):
        return None
    return cls.resolved_n_s(values_for(cfg, cls), n_train, cfg.batch_size)


def build_schedule(cfg: Config, n_train: int) -> Schedule:
    """The learning-rate schedule of ``cfg`` for ``n_train`` training rows."""
    cls = SCHEDULES[cfg.schedule]
    values = values_for(cfg, cls)
    total = cls.updates(values, n_train, cfg.batch_size)
    return cls.from_options(values, total, n_train, cfg.batch_size)


def build_optimizer(cfg: Config, network: Network) -> Optimizer:
    """The optimiser of ``cfg`` (with its options), decaying ``network``'s dense weights."""
    cls = OPTIMIZERS[cfg.optimizer]
    return make_optimizer(
        cfg.optimizer,
        l2=cfg.lam,
        weight_decay=cfg.weight_decay,
        decay_names=network.decay_names(),
        **values_for(cfg, cls),
    )


def image_needs(cfg: Config) -> list[str]:
    """What in ``cfg`` needs images: the active image augmentations and ``flip_average``."""
    names = [
        n
        for n, cls in AUGMENTATIONS.items()
        if cls.needs_image and cls.active(values_for(cfg, cls))
    ]
    return names + (["flip_average"] if cfg.flip_average else [])


def build_augmentations(cfg: Config, shape: ImageShape | None) -> list[Augmentation]:
    """The active augmentations of ``cfg`` for images of ``shape`` (None: flat features,
    where an image augmentation is one clear error)."""
    values: dict[str, Any] = {}
    for cls in AUGMENTATIONS.values():
        values |= values_for(cfg, cls)
    return make_augmentations(values, shape)


def build_network(cfg: Config, d_in: int, n_classes: int, rng: np.random.Generator) -> Network:
    """The network described by ``cfg`` (``layers``, else the ``hidden`` shorthand) for
    ``d_in`` inputs and ``n_classes`` outputs, with weights drawn from ``rng``."""
    return Network.build(
        d_in,
        cfg.hidden,
        n_classes,
        rng=rng,
        init=cfg.init,
        init_sigma=cfg.init_sigma or None,
        batch_norm=cfg.batch_norm,
        bn_position=cfg.bn_position,
        bn_alpha=cfg.bn_alpha,
        drop_prob=cfg.drop_prob,
        activation=cfg.activation,
        layers=cfg.layers or None,
        dtype=cfg.dtype,
    )


def resolved_config(cfg: Config, n_train: int) -> dict[str, Any]:
    """``cfg`` as a dict with the derived quantities of a run on ``n_train`` rows filled in."""
    d = cfg.to_dict()
    d["n_s_resolved"] = resolved_n_s(cfg, n_train)
    d["total_updates"] = total_updates(cfg, n_train)
    d["n_train_samples"] = n_train
    return d
