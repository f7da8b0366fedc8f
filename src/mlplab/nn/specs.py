"""A network as a list of layer specs: what a recipe writes and what a model file stores.

A recipe describes the hidden part of a network either by the shorthand ``hidden = [50, 50]``
(dense layers with ``activation`` between them, plus ``batch_norm`` and ``drop_prob``, as in
the course) or as a list::

    layers = [{dense = 1024}, "batchnorm", "gelu", {dense = 256, bias = false}, "gelu"]

Each item is a layer kind (``"gelu"``), a one-key table ``{kind = value}`` setting the kind's
primary option (``{dense = 256}`` is 256 units, ``{dropout = 0.2}``, ``{leaky_relu = 0.1}``),
or a table with ``kind`` and options (``{kind = "dense", units = 256, bias = false}``). Every
kind of :data:`~mlplab.nn.layers.LAYERS` and :data:`~mlplab.nn.activations.ACTIVATIONS` may
appear; each declares and checks its own options. The classifier (a dense layer to the
number of classes) is always added last. A dense layer directly followed by a batch norm has
no bias unless it says ``bias = true`` (the norm's ``beta`` plays its role); a dense layer
followed by no activation is a linear bottleneck. The input width comes from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlplab.errors import ConfigError
from mlplab.nn.activations import ACTIVATIONS
from mlplab.nn.init import init_weights
from mlplab.nn.layers import LAYERS, Dense, Layer
from mlplab.options import check_options

#: More weights than this (4 GiB of float32, before gradients and optimiser state) is a typo.
MAX_WEIGHTS = 10**9


def layer_kinds() -> dict[str, type[Layer]]:
    """Every layer kind a recipe or a model file may name: :data:`LAYERS`, then
    :data:`ACTIVATIONS` (read at call time, so a kind registered later is found)."""
    return {**LAYERS, **ACTIVATIONS}


def layer_class(kind: Any) -> type[Layer]:
    """The class of layer ``kind`` (:func:`layer_kinds`)."""
    known = layer_kinds()
    if not isinstance(kind, str) or kind not in known:
        raise ConfigError(f"unknown layer kind {kind!r}; known: {', '.join(known)}")
    return known[kind]


def layer_from_spec(spec: dict[str, Any], dtype: np.dtype | type = np.float32) -> Layer:
    """Rebuild an (unweighted: zeros) layer from its :meth:`Layer.spec` (model files)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"a layer spec must be a table, got {spec!r}")
    return layer_class(spec.get("kind")).from_spec(spec, dtype)


def normalise(item: Any) -> dict[str, Any]:
    """One recipe item as ``{"kind": kind, **options given}``, its options checked."""
    if isinstance(item, str):
        spec: dict[str, Any] = {"kind": item}
    elif isinstance(item, dict) and "kind" in item:
        spec = dict(item)
    elif isinstance(item, dict) and len(item) >= 1:
        kinds = [k for k in item if k in layer_kinds()]
        if len(kinds) != 1:
            raise ConfigError(
                f"layer {item!r}: name exactly one layer kind, as {{dense = 256}} or "
                f'{{kind = "dense", units = 256}}'
            )
        kind = kinds[0]
        primary = layer_class(kind).primary
        if primary is None:
            raise ConfigError(f'layer kind {kind!r} takes no value: write "{kind}"')
        spec = {"kind": kind, primary: item[kind], **{k: v for k, v in item.items() if k != kind}}
    else:
        raise ConfigError(f"a layer is a kind or a table, got {item!r}")
    cls = layer_class(spec["kind"])
    given = {k: v for k, v in spec.items() if k != "kind"}
    check_options(f"layer {spec['kind']}", cls.options, given)
    if "units" in cls.options and "units" not in given:  # a dense layer says how wide it is
        raise ConfigError(f"layer {spec['kind']} needs units: {{{spec['kind']} = 256}}")
    return spec


def shorthand(
    hidden: Sequence[int],
    *,
    activation: str = "relu",
    batch_norm: bool = False,
    bn_position: str = "before_relu",
    drop_prob: float = 0.0,
) -> list[dict[str, Any]]:
    """The layer list of the course's shorthand: per hidden width a dense layer, the
    activation (batch norm before it, or after with ``bn_position="after_relu"``) and
    dropout when ``drop_prob > 0``."""
    if bn_position not in ("before_relu", "after_relu"):
        raise ConfigError(f"bn_position must be 'before_relu' or 'after_relu', got {bn_position!r}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    specs: list[dict[str, Any]] = []
    for h in hidden:
        norm = [{"kind": "batchnorm"}] if batch_norm else []
        act = [{"kind": activation}]
        specs += [{"kind": "dense", "units": int(h)}]
        specs += [*norm, *act] if bn_position == "before_relu" else [*act, *norm]
        if drop_prob > 0:
            specs.append({"kind": "dropout", "drop_prob": float(drop_prob)})
    return specs


@dataclass
class BuildContext:
    """What building needs besides the specs: the generator that draws the weights (in layer
    order), the initialisation scheme, the dtype and the batch norms' defaults."""

    rng: np.random.Generator
    init: str = "course"
    init_sigma: float | None = None
    dtype: type = np.float32
    bn_alpha: float = 0.9
    bn_running_init: str = "first_batch"

    def weights(self, d_in: int, d_out: int) -> np.ndarray:
        return init_weights(self.rng, d_in, d_out, self.init, self.init_sigma, self.dtype)


def _resolved(specs: Sequence[Any], n_classes: int, ctx: BuildContext) -> list[dict[str, Any]]:
    """Every spec normalised with all its options, the classifier appended."""
    items = [normalise(s) for s in specs] + [{"kind": "dense", "units": int(n_classes)}]
    out = []
    for i, spec in enumerate(items):
        given = {k: v for k, v in spec.items() if k != "kind"}
        if spec["kind"] == "dense" and "bias" not in given:
            given["bias"] = i + 1 == len(items) or items[i + 1]["kind"] != "batchnorm"
        if spec["kind"] == "batchnorm":
            given.setdefault("alpha", ctx.bn_alpha)
        cls = layer_class(spec["kind"])
        checked = check_options(f"layer {spec['kind']}", cls.options, given)
        out.append({"kind": spec["kind"], **checked})
    return out


def check_size(d_in: int, resolved: Sequence[dict[str, Any]], what: str = "") -> None:
    """Refuse more than :data:`MAX_WEIGHTS` dense weights (before anything is allocated)."""
    d, weights = int(d_in), 0
    for spec in resolved:
        if issubclass(layer_class(spec["kind"]), Dense):
            weights += d * spec["units"]
            d = spec["units"]
    if weights > MAX_WEIGHTS:
        raise ConfigError(
            f"{what or f'the network for {d_in} inputs has'} {weights:.3g} weights "
            f"({4 * weights / 2**30:.1f} GiB in float32); at most {MAX_WEIGHTS:.0e} are allowed"
        )


def check_recipe_size(specs: Sequence[Any]) -> list[dict[str, Any]]:
    """What a recipe can know before its data: the weights between its own layers (one
    input, two classes) are already too many. Returns the specs resolved (each checked)."""
    resolved = _resolved(specs, 2, BuildContext(np.random.default_rng(0)))
    check_size(1, resolved, "before any input, the layers alone have")
    return resolved


def build_layers(d_in: int, specs: Sequence[Any], n_classes: int, ctx: BuildContext) -> list[Layer]:
    """The layers of ``specs`` for inputs of width ``d_in``, ending in the classifier.

    The number of weights is checked before anything is drawn or allocated."""
    if isinstance(d_in, bool) or not 1 <= int(d_in) or not 1 <= int(n_classes):
        raise ConfigError(f"input width and classes must be positive, got {d_in}, {n_classes}")
    resolved = _resolved(specs, n_classes, ctx)
    check_size(d_in, resolved)
    layers, d = [], int(d_in)
    for spec in resolved:
        layer = layer_class(spec["kind"]).build(
            d, {k: v for k, v in spec.items() if k != "kind"}, ctx
        )
        layers.append(layer)
        d = layer.width(d)
    return layers
