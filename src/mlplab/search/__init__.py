"""Hyper-parameter search (``mlplab search``): durable, parallel, two-stage random search.

Modules: :mod:`.space` (search spaces, slot draws, the fine-interval rules),
:mod:`.study` (Optuna storage, the study lock, stale trials, :func:`best_overrides`),
:mod:`.worker` (the trial loop and worker processes), :mod:`.report` (tables and
plot), :mod:`.cli` (the click command).  Optuna is imported only when a search
actually runs, so ``mlplab --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["best_overrides"]


def best_overrides(study: str, storage: str | None = None) -> dict[str, str]:
    """The best trial's searched fields as ``--set`` text (see :func:`.study.best_overrides`)."""
    from mlplab.search.study import best_overrides as _best

    return _best(study, storage)
