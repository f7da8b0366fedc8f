"""Running the experiments of :mod:`.plan`: one runner per kind, each a call of the library
function that the matching command calls too, cached by :class:`mlplab.train.reuse.Cache`.

A runner takes the experiment and the :class:`Context` of the reproduction and returns
its result (what the renderers of :mod:`mlplab.reproduce` draw from); it writes only
under ``OUT/<experiment id>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import Config, load_recipe
from mlplab.data import RawDataset
from mlplab.fileio import atomic_write_json
from mlplab.optim.schedules import SCHEDULES
from mlplab.reproduce.plan import QUICK, Experiment
from mlplab.train.ablation import run_ablation
from mlplab.train.lr_range import run_lr_range
from mlplab.train.reuse import Cache
from mlplab.train.run import cached_experiment
from mlplab.train.sensitivity import run_sensitivity


def quick_overrides(recipe: str) -> dict[str, str]:
    """--quick's overrides of ``recipe``: :data:`.plan.QUICK`, at most 2 cycles; the cyclic
    schedule's lengths and ``record_every`` only for a cyclic schedule (another schedule has
    no ``n_s``, and a recipe may not set what it does not use)."""
    over = dict(QUICK)
    base = load_recipe(recipe)
    over["cycles"] = str(min(base.cycles, 2))
    if "n_s" not in SCHEDULES[base.schedule].options:  # not the cyclic schedule's lengths
        for key in ("record_every", "n_s", "n_s_k", "cycles"):
            over.pop(key)
    return over


@dataclass
class Context:
    """One reproduction: where it writes, its data, its settings, and what it has run."""

    out: Path
    raw: RawDataset
    quick: bool = False
    workers: int = 1
    progress: bool = True
    cache: Cache = field(default_factory=Cache)
    results: dict[str, Any] = field(default_factory=dict)  # by experiment id

    def path(self, exp: Experiment) -> Path:
        return self.out / exp.id

    def overrides(self, exp: Experiment) -> dict[str, str]:
        """The recipe overrides of ``exp``: --quick's, then its own."""
        return {**(quick_overrides(exp.recipe) if self.quick else {}), **exp.overrides}

    def config(self, exp: Experiment, extra: dict[str, str] | None = None) -> Config:
        return load_recipe(exp.recipe, {**self.overrides(exp), **(extra or {})})

    def options(self, exp: Experiment) -> dict[str, Any]:
        return {**exp.options, **(exp.quick if self.quick else {})}

    def train(self, cfg: Config, directory: Path) -> dict[str, Any]:
        return cached_experiment(
            cfg, directory, raw=self.raw, cache=self.cache, progress=self.progress
        )


def run(exp: Experiment, ctx: Context) -> Any:
    """The result of ``exp`` (run, continued or read back), also kept in ``ctx.results``."""
    ctx.results[exp.id] = RUNNERS[exp.kind](exp, ctx)
    return ctx.results[exp.id]


def run_train(exp: Experiment, ctx: Context) -> dict[str, Any]:
    """One training (``mlplab train``): its ``results.json``."""
    return ctx.train(ctx.config(exp), ctx.path(exp))


def run_seeds(exp: Experiment, ctx: Context) -> dict[str, Any]:
    """The recipe with the best setting of ``exp.best_of``'s search (run first if it has not
    been), once per seed of ``options["seeds"]``, each into ``seed-N``: the setting and the
    runs."""
    best: dict[str, str] = {}
    if exp.best_of is not None:
        search = ctx.results.get(exp.best_of.id) or run(exp.best_of, ctx)
        best = search["best"]["overrides"]
    runs = []
    for seed in ctx.options(exp)["seeds"]:
        where = f"{exp.id}/seed-{seed}"
        res = ctx.train(ctx.config(exp, {**best, "seed": str(seed)}), ctx.out / where)
        runs.append({"seed": seed, "dir": where, "results": res})
    return {"best": best, "runs": runs}


def run_search(exp: Experiment, ctx: Context) -> dict[str, Any]:
    """The search of the recipe (``mlplab search``): its summary, ``search.json``. An
    interrupted one continues its study; one of other settings is deleted and run again."""
    from mlplab.search import run_search as search
    from mlplab.search.space import load_spec

    spec = load_spec(exp.recipe, **ctx.options(exp))
    sets = ctx.overrides(exp)

    def go(resume: bool) -> dict[str, Any]:
        return search(
            exp.recipe,
            spec=spec,
            sets=sets,
            out=ctx.path(exp),
            workers=ctx.workers,
            raw=ctx.raw,
            restart="never" if resume else "always",
            quiet=True,
            echo=lambda _s: None,
        ).summary

    key = ctx.cache.key("search", load_recipe(exp.recipe, sets), ctx.raw, spec=spec.to_dict())
    return ctx.cache.get(ctx.path(exp), "search", key, "search.json", go)


def run_gradcheck(exp: Experiment, ctx: Context) -> list[dict[str, Any]]:
    """The gradient checks of ``options["cases"]`` on real samples (``mlplab gradcheck``
    with ``--data``): one row per case, with the seconds it took, in ``results.json``."""
    from mlplab.gradcheck.netcheck import check_batch, check_network

    cases = ctx.options(exp)["cases"]

    def go(_resume: bool) -> list[dict[str, Any]]:
        rows = []
        for label, dims, n, hidden, bn in cases:
            rng = np.random.default_rng(0)
            X, y, k = check_batch(ctx.raw, n, dims, rng)
            t = time.perf_counter()
            rep = check_network(X, y, k, hidden, rng, lam=0.01, init="he", batch_norm=bn)
            rows.append({"case": label, "seconds": time.perf_counter() - t, **rep.to_dict()})
        atomic_write_json(ctx.path(exp) / "results.json", rows)
        return rows

    key = ctx.cache.key("gradcheck", None, ctx.raw, cases=cases)
    return ctx.cache.get(ctx.path(exp), "gradcheck", key, "results.json", go)


def study(fn: Callable[..., Any]) -> Callable[[Experiment, Context], Any]:
    """The runner of a study function of :mod:`mlplab.train` (``run_sensitivity``,
    ``run_lr_range``, ``run_ablation``: what ``mlplab sensitivity``, ``lr-range`` and
    ``ablation`` call), called as ``fn(config, directory, data, **options, cache, progress)``."""

    def runner(exp: Experiment, ctx: Context) -> Any:
        return fn(
            ctx.config(exp),
            ctx.path(exp),
            ctx.raw,
            **ctx.options(exp),
            cache=ctx.cache,
            progress=ctx.progress,
        )

    return runner


RUNNERS: dict[str, Callable[[Experiment, Context], Any]] = {
    "train": run_train,
    "seeds": run_seeds,
    "search": run_search,
    "gradcheck": run_gradcheck,
    "sensitivity": study(run_sensitivity),
    "lr-range": study(run_lr_range),
    "ablation": study(run_ablation),
}
