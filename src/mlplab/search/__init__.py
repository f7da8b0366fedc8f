"""Hyper-parameter search (``mlplab search``): a two-stage random search on Optuna.

:func:`run_search` is the library function that the CLI and ``mlplab reproduce`` call, and
:func:`best_overrides` reads a study's best setting. Modules: :mod:`.space` (spaces, slot
draws, fine-interval rules), :mod:`.storage` (Optuna storages, study names and settings, the
best trial), :mod:`.runner` (:func:`run_search` and its workers on ``study.optimize``). The
report is :mod:`mlplab.report.search`, the command :mod:`mlplab.cli_search`. Both functions
are imported on first use, with Optuna, so that ``mlplab --help`` stays fast.
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
