"""Report sections of trainings: one run, the final model's seeds, the batch-norm comparison.

Each renderer takes the :class:`.plan.Show`, its experiments' results (in order) and the
:class:`.runners.Context`, and returns sections; numbers are read from the results, and
every section links the files they came from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplab.report.document import Figure, Section, Table, Text, md_escape
from mlplab.reproduce.plan import REFERENCE, Show
from mlplab.reproduce.runners import Context

Block = Table | Figure | Text

#: The settings shown under a result, in this order (see settings_table).
SETTINGS = (
    "split",
    "hidden",
    "init",
    "batch_norm",
    "lam",
    "batch_size",
    "optimizer",
    "schedule",
    "eta_min",
    "eta_max",
    "eta",
    "n_s_resolved",
    "cycles",
    "epochs",
    "n_train",
    "drop_prob",
    "flip",
    "translate",
    "label_smoothing",
    "snapshot_ensemble",
    "seed",
)


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def settings_table(resolved: dict[str, Any], title: str = "settings") -> Table:
    """The recipe's settings that matter for the course, from a resolved config dict."""
    from mlplab.optim.schedules import SCHEDULES  # each schedule declares what it reads

    sched = SCHEDULES.get(str(resolved.get("schedule", "")))
    own = set(sched.options) if sched is not None else set()
    others = {name for cls in SCHEDULES.values() for name in cls.options} - own
    hidden = {"n_s_resolved" if name == "n_s" else name for name in others}
    rows = []
    for k in SETTINGS:
        v = resolved.get(k)
        if k in hidden or (v in (None, 0, 0.0, False) and k not in ("lam", "batch_norm")):
            continue
        rows.append((k.replace("_resolved", ""), f"`{v}`"))
    return Table(("field", "value"), rows, caption=title)


def numbers_from(*paths: str) -> Text:
    """The paragraph that links the files a section's numbers were read from."""
    return Text(f"Numbers from {' and '.join(f'[{p}]({p})' for p in paths)}.")


def run(show: Show, results: list[Any], _ctx: Context) -> list[Section]:
    """One training: its accuracies beside the course's, its settings and curves."""
    (exp,), (res,) = show.experiments, results
    head = (
        "test accuracy",
        "course / reports",
        "validation accuracy",
        "training accuracy",
        "updates",
        "training time",
    )
    row = (
        f"**{pct(res['test_accuracy'])}**",
        REFERENCE.get(exp.recipe, "-"),
        pct(res["val_accuracy"]),
        pct(res["train_accuracy"]),
        res["updates"],
        f"{res['train_seconds']:.1f} s",
    )
    blocks: list[Block] = [
        Text(show.text),
        Table(head, [row]),
        settings_table(res["config"], f"settings of `{exp.recipe}`"),
        Figure(f"{exp.id}/curves.png", f"{exp.recipe}: cost, loss, accuracy and learning rate"),
        numbers_from(f"{exp.id}/results.json"),
    ]
    return [Section(show.title, blocks, level=3)]


def final(show: Show, results: list[Any], ctx: Context) -> list[Section]:
    """The search's best setting trained with several seeds: mean ± sd, each run, the first
    run's per-class accuracy and confusion matrix."""
    (exp,), (out,) = show.experiments, results
    runs, recipe = out["runs"], exp.recipe
    tests = [r["results"]["test_accuracy"] for r in runs]
    mean, sd = float(np.mean(tests)), float(np.std(tests, ddof=1)) if len(tests) > 1 else 0.0
    first, seed0, dir0 = runs[0]["results"], runs[0]["seed"], runs[0]["dir"]
    blocks: list[Block] = []
    if "test_confusion" in first:
        from mlplab.report.plots import plot_confusion

        fig = f"{dir0}/confusion.png"
        plot_confusion(first["test_confusion"], ctx.raw.classes, ctx.out / fig)
        per = [pct(a) for a in first["test_per_class_accuracy"]]
        blocks = [
            Table(
                [md_escape(c) for c in ctx.raw.classes],  # names, never Markdown
                [per],
                caption=f"per-class test accuracy, seed {seed0}",
            ),
            Figure(fig, f"confusion matrix of seed {seed0} (rows true class, columns predicted)"),
        ]
    chosen = ", ".join(f"{k} = {v}" for k, v in out["best"].items())
    rows = [
        (
            str(r["seed"]),
            pct(r["results"]["test_accuracy"]),
            pct(r["results"]["val_accuracy"]),
            pct(r["results"]["train_accuracy"]),
            f"{r['results']['train_seconds']:.1f} s",
            f"[results.json]({r['dir']}/results.json)",
        )
        for r in runs
    ]
    text = (
        f"The best setting of the search ({chosen}) trained on split `49k` with "
        f"{len(runs)} seeds (each its own split, initialisation and batch order): "
        f"test accuracy **{100 * mean:.2f} ± {100 * sd:.2f} %** (mean ± sd); course "
        f"and reports: {REFERENCE.get(recipe, '-')}."
    )
    head = ("seed", "test", "validation", "training", "training time", "numbers")
    return [
        Section(
            show.title,
            [
                Text(text),
                Table(head, rows),
                *blocks,
                settings_table(first["config"], f"settings of `{recipe}` (seed {seed0})"),
                Figure(f"{dir0}/curves.png", f"{recipe}, seed {seed0}"),
            ],
            level=3,
        )
    ]


def bn_compare(show: Show, results: list[Any], ctx: Context) -> list[Section]:
    """Pairs of runs (each depth without, then with batch norm): test accuracies beside the
    course's, all runs' curves on one axis (``OUT/a3-compare.png``), chosen curves."""
    from mlplab.report.plots import plot_runs

    exps, rows, runs = show.experiments, [], []
    for i in range(0, len(exps), 2):
        (plain, bn), (res, res_bn) = exps[i : i + 2], results[i : i + 2]
        depth = plain.recipe.rsplit("/", 1)[-1]
        rows.append(
            (
                depth.replace("layer", " layers"),
                f"**{pct(res_bn['test_accuracy'])}**",
                REFERENCE[bn.recipe],
                pct(res["test_accuracy"]),
                REFERENCE[plain.recipe],
                f"[with BN]({bn.id}/results.json), [without]({plain.id}/results.json)",
            )
        )
        runs += [(f"{depth}-bn", res_bn["history"]), (f"{depth} without BN", res["history"])]
    plot_runs(runs, ctx.out / "a3-compare.png")
    head = (
        "network",
        "test accuracy with BN",
        "course / reports",
        "without BN",
        "course / reports",
        "numbers from",
    )
    blocks: list[Block] = [
        Table(head, rows),
        settings_table(results[1]["config"], f"settings of `{exps[1].recipe}`"),
        Figure("a3-compare.png", "the four runs: validation accuracy and loss"),
        *(Figure(f"{e.id}/curves.png", caption) for e, caption in show.curves),
    ]
    return [Section(show.title, blocks, level=3)]
