"""mlplab: fully-connected neural networks in NumPy, on CIFAR-10 or your own small data.

The names a user needs, importable from the package itself::

    import mlplab

    clf = mlplab.MLPClassifier(hidden=[64], activation="gelu", n_s=200).fit(X, y)
    results = mlplab.train("assignment2/ex3", data="my-images/", out="runs/mine",
                           overrides={"split": "4000/500"})
    model = mlplab.load_model("runs/mine")          # model.predict_proba(raw_rows)

Each name is imported from its module on first use (so ``import mlplab`` stays light):
:data:`_PUBLIC` says where each one lives.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute)
_PUBLIC = {
    # the estimator and the network
    "MLPClassifier": ("mlplab.train.estimator", "MLPClassifier"),
    "Network": ("mlplab.nn.network", "Network"),
    "Layer": ("mlplab.nn.layers", "Layer"),
    "Dense": ("mlplab.nn.layers", "Dense"),
    "ReLU": ("mlplab.nn.layers", "ReLU"),
    "BatchNorm": ("mlplab.nn.layers", "BatchNorm"),
    "Dropout": ("mlplab.nn.layers", "Dropout"),
    "Activation": ("mlplab.nn.activations", "Activation"),
    "GELU": ("mlplab.nn.activations", "GELU"),
    "LeakyReLU": ("mlplab.nn.activations", "LeakyReLU"),
    "Tanh": ("mlplab.nn.activations", "Tanh"),
    # the registries: a new component is a class and one line in one of these
    "LAYERS": ("mlplab.nn.layers", "LAYERS"),
    "ACTIVATIONS": ("mlplab.nn.activations", "ACTIVATIONS"),
    "OPTIMIZERS": ("mlplab.optim.optimizers", "OPTIMIZERS"),
    "SCHEDULES": ("mlplab.optim.schedules", "SCHEDULES"),
    "AUGMENTATIONS": ("mlplab.data.augment", "AUGMENTATIONS"),
    "Optimizer": ("mlplab.optim.optimizers", "Optimizer"),
    "Augmentation": ("mlplab.data.augment", "Augmentation"),
    "make_optimizer": ("mlplab.optim.optimizers", "make_optimizer"),
    # recipes, data, runs and model files
    "Config": ("mlplab.config", "Config"),
    "load_recipe": ("mlplab.config", "load_recipe"),
    "load_data": ("mlplab.data", "load_data"),
    "ImageShape": ("mlplab.images", "ImageShape"),
    "train": ("mlplab.train.run", "train"),
    "run_experiment": ("mlplab.train.run", "run_experiment"),
    "load_model": ("mlplab.nn.serialize", "load_network"),
    "save_model": ("mlplab.nn.serialize", "save_network"),
    "gradcheck": ("mlplab.gradcheck", "gradcheck"),
    "MlplabError": ("mlplab.errors", "MlplabError"),
}

__all__ = ["__version__", *_PUBLIC]


#: public functions named like a subpackage: ``mlplab.train`` is the package ``mlplab.train``
#: and, called, the function ``mlplab.train.run.train`` (Python binds ``mlplab.train`` to the
#: package as soon as any module in it is imported, so the two must be one object)
_CALLABLE_PACKAGES = {"train", "gradcheck"}


class _CallablePackage(types.ModuleType):
    """A package that can be called as its public function (``__wrapped__``, imported on
    first use, so that ``inspect.signature`` and ``help`` show the function's)."""

    @property
    def __wrapped__(self) -> Any:
        module, attr = _PUBLIC[self.__name__.rsplit(".", 1)[1]]
        return getattr(importlib.import_module(module), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)


def _callable_package(name: str) -> None:
    """Called by ``mlplab/<name>/__init__.py``: that package is also the function
    :data:`_PUBLIC` names for it."""
    sys.modules[name].__class__ = _CallablePackage


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mlplab' has no attribute {name!r}")
    if name in _CALLABLE_PACKAGES:
        return importlib.import_module(f"mlplab.{name}")  # callable: _CallablePackage
    module, attr = _PUBLIC[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
