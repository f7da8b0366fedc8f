"""Hyper-parameter search (``mlplab search``): a two-stage random search on Optuna.

:func:`run_search` is the library function that the CLI and ``mlplab reproduce`` call.
Modules: :mod:`.space` (spaces, slot draws, fine-interval rules), :mod:`.storage` (Optuna
storage, study names and settings, the best trial), :mod:`.runner` (enqueued slots, workers
on ``study.optimize``, shared memory-mapped splits), :mod:`.report` (tables, plot, summary),
:mod:`.launch` (:func:`run_search`), :mod:`.cli`. Optuna is imported only when a search
runs, so ``mlplab --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["best_overrides", "run_search"]


def run_search(recipe: str, **kwargs: Any) -> Any:
    """Run or continue a search (see :func:`mlplab.search.launch.run_search`)."""
    from mlplab.search.launch import run_search as _run

    return _run(recipe, **kwargs)


def best_overrides(study: str, storage: str | None = None) -> dict[str, str]:
    """The best trial's searched fields as ``--set`` text (see :mod:`.storage`)."""
    from mlplab.search.storage import best_overrides as _best

    return _best(study, storage)
