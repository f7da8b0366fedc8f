"""Hyper-parameter search (``mlplab search``): a two-stage random search on Optuna.

:func:`run_search` (:mod:`.runner`) runs one for the CLI and ``mlplab reproduce``;
:func:`best_overrides` (:mod:`.storage`) reads a study's best setting. Both are imported on
first use, with Optuna, so that ``mlplab --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["best_overrides", "run_search"]
_HOME = {"run_search": "mlplab.search.runner", "best_overrides": "mlplab.search.storage"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)
