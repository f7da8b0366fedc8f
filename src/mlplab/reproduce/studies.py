"""Report sections of studies: the gradient check, a search, the initialisation study, the
learning-rate range test and the ablation (renderers as in :mod:`.trainings`)."""

from __future__ import annotations

import json
from typing import Any

from mlplab.report.document import Figure, Section, Table, Text
from mlplab.reproduce.plan import Show
from mlplab.reproduce.runners import Context
from mlplab.reproduce.trainings import Block, numbers_from, pct, settings_table


def gradcheck(show: Show, results: list[Any], _ctx: Context) -> list[Section]:
    """Every parameter's relative and absolute errors, per checked network."""
    (exp,), (rows,) = show.experiments, results
    table_rows = [
        (
            r["case"],
            p["name"],
            "x".join(map(str, p["shape"])),
            f"{p['max_rel_error']:.2e}",
            f"{p['mean_rel_error']:.2e}",
            f"{p['max_abs_error']:.2e}",
        )
        for r in rows
        for p in r["parameters"]
    ]
    head = (
        "network",
        "parameter",
        "shape",
        "max rel. error",
        "mean rel. error",
        "max abs. error",
    )
    text = (
        "Analytic gradients of every parameter against centred differences "
        "(float64, h = 1e-5, λ = 0.01, real CIFAR-10 samples); relative error "
        "|a−n| / max(1e-10, |a|+|n|)."
    )
    blocks: list[Block] = [
        Text(text),
        Table(head, table_rows),
        numbers_from(f"{exp.id}/results.json"),
    ]
    return [Section(show.title, blocks, level=3)]


def search(show: Show, results: list[Any], _ctx: Context) -> list[Section]:
    """A coarse-to-fine search: its rule, smoothing, the coarse and fine tables, its plot."""
    (exp,), (summary,) = show.experiments, results
    return [Section(show.title, search_blocks(exp.id, exp.recipe, summary), level=3)]


def search_blocks(where: str, recipe: str, summary: dict[str, Any]) -> list[Block]:
    """The blocks of a search's section, from its summary (``where/search.json``)."""
    runs = summary.get("repeats", {})
    fine_set = summary.get("fine_set") or {}
    how = [f"{k} = {v}" for k, v in fine_set.items()]
    if runs.get("fine", 1) > 1:
        how.append(f"each the mean validation accuracy of {runs['fine']} seeds")
    best = summary.get("best") or {}
    interval = summary.get("fine_interval")
    sampler, pruner = summary.get("sampler", "random"), summary.get("pruner", "none")
    stages = "Coarse-to-fine search" if summary["counts"]["fine"]["budget"] else "Search"
    text = (
        f"{stages} with `{recipe}`: space {', '.join(summary['space'])}"
        + (f", sampler `{sampler}`, pruner `{pruner}`" if "sampler" in summary else "")
        + (f", fine rule `{summary['fine_rule']}`" if summary["counts"]["fine"]["budget"] else "")
        + (f", fine interval {', '.join(interval)}" if interval else "")
        + "."
        + (f" Fine trials: {'; '.join(how)}." if how else "")
        + (
            " The best setting is chosen among the fine trials, whose scores are not "
            "comparable with the coarse ones."
            if best.get("from") == "fine stage"
            else ""
        )
    )
    blocks: list[Block] = [Text(text)]
    for p, sm in (summary.get("smoothing") or {}).items():
        blocks.append(
            Text(
                f"The coarse scores, smoothed along log {p} with a Gaussian kernel of "
                f"{sm['h']:g} decades, peak at {p} = {sm['argmax']:.3g} "
                f"({pct(sm['max'])}); the residuals' standard deviation (the noise) is "
                f"{100 * sm['noise']:.2f} points, and the fine interval is the region where "
                "the smoothed score lies within that noise of its peak."
            )
        )
    for stage, title in (("coarse", "all coarse trials, by value"), ("fine", "fine, top 3")):
        rows = summary["all"]["coarse"] if stage == "coarse" else summary["top"]["fine"]
        if not rows:
            continue
        keys = list(rows[0]["params"])
        multi = any(r.get("runs", 1) > 1 for r in rows)
        blocks.append(
            Table(
                (*keys, "validation accuracy", *(("runs", "sd") if multi else ()), "seconds"),
                [
                    (
                        *(f"{r['params'][k]:.4g}" for k in keys),
                        "diverged" if r["diverged"] else pct(r["val_accuracy"]),
                        *((str(r["runs"]), pct(r["val_sd"])) if multi else ()),
                        f"{r['seconds']:.0f}",
                    )
                    for r in rows
                ],
                caption=f"{stage} stage: {title}",
            )
        )
    blocks.extend(_pruned_blocks(summary, pruner))
    if summary.get("figure_error"):
        blocks.append(Text(f"(The figure could not be drawn: {summary['figure_error']}.)"))
    else:
        blocks.append(
            Figure(f"{where}/search.png", "validation accuracy against the searched parameter(s)")
        )
    blocks.append(
        Text(
            f"Full table: [{where}/search.md]({where}/search.md), numbers from "
            f"[{where}/search.json]({where}/search.json)."
        )
    )
    return blocks


def _pruned_blocks(summary: dict[str, Any], pruner: str) -> list[Block]:
    """The trials the pruner stopped: where, at what validation accuracy, after how many
    updates (none without pruning)."""
    rows = [r for stage in ("coarse", "fine") for r in (summary.get("pruned") or {}).get(stage, [])]
    if not rows:
        return []
    keys = list(rows[0]["params"])
    return [
        Table(
            (*keys, "stopped", "validation accuracy then", "updates", "seconds"),
            [
                (
                    *(f"{r['params'][k]:.4g}" for k in keys),
                    r["state"],
                    pct(r["val_accuracy"]),
                    str(r["updates"]),
                    f"{r['seconds']:.0f}",
                )
                for r in rows
            ],
            caption=f"trials stopped by the pruner `{pruner}` (never the best)",
        )
    ]


def sensitivity(show: Show, results: list[Any], ctx: Context) -> list[Section]:
    """σ against test accuracy with and without batch norm; the runs' curves."""
    from mlplab.report.plots import plot_runs

    (exp,), (rows,) = show.experiments, results
    base = ctx.path(exp)
    histories = [
        (
            f"σ={r['sigma']:g}{' BN' if r['batch_norm'] else ''}",
            json.loads((base / r["results"]).read_text())["history"],
        )
        for r in rows
    ]
    plot_runs(histories, base / "compare.png")
    by = {(r["sigma"], r["batch_norm"]): r for r in rows}
    table = Table(
        ("σ", "test accuracy with BN", "without BN"),
        [
            (f"{s:g}", pct(by[(s, True)]["test_accuracy"]), pct(by[(s, False)]["test_accuracy"]))
            for s in dict.fromkeys(r["sigma"] for r in rows)
        ],
    )
    blocks: list[Block] = [
        Text(show.text),
        table,
        Figure(
            f"{exp.id}/sensitivity.png", "loss curves: with BN left, without right, one row per σ"
        ),
        Figure(f"{exp.id}/compare.png", "all six runs on one axis"),
        Text(
            f"Numbers from [{exp.id}/sensitivity.json]({exp.id}/sensitivity.json) and the "
            "runs' results.json files."
        ),
    ]
    return [Section(show.title, blocks, level=3)]


def lr_range(show: Show, results: list[Any], _ctx: Context) -> list[Section]:
    """The range test's suggested bounds and its curve."""
    (exp,), (res,) = show.experiments, results
    diverged = res["diverged_at_lr"]
    blocks: list[Block] = [
        Text(
            f"The 3072-50-10 net, η from {res['lr_min']:g} to {res['lr_max']:g} "
            f"over {res['epochs']:g} epochs. Rule: {res['rule']}."
        ),
        Table(
            ("suggested η_min", "suggested η_max", "diverged at"),
            [
                (
                    f"{res['suggested_eta_min']:.3g}",
                    f"{res['suggested_eta_max']:.3g}",
                    "-" if diverged is None else f"{diverged:.3g}",
                )
            ],
        ),
        Figure(f"{exp.id}/lr_range.png", "accuracy and loss against η"),
        numbers_from(f"{exp.id}/lr_range.json"),
    ]
    return [Section(show.title, blocks, level=3)]


def ablation(show: Show, results: list[Any], ctx: Context) -> list[Section]:
    """Each ingredient removed in turn; the snapshot ensemble against its snapshots."""
    (exp,), (rows,) = show.experiments, results
    full_file = f"{exp.id}/{rows[0]['results']}"  # the full recipe's run
    full = json.loads((ctx.out / full_file).read_text())
    snaps = full.get("snapshot_test_accuracies", [])
    table = Table(
        ("removed", "test accuracy", "change", "wall time", "numbers from"),
        [
            (
                r["removed"],
                pct(r["test_accuracy"]),
                f"{100 * r['delta']:+.2f}",
                f"{r['wall_seconds'] / 60:.1f} min",
                f"[results.json]({exp.id}/{r['results'].split(' ')[0]})",
            )
            for r in rows
        ],
    )
    gain = Table(
        ("model", "test accuracy"),
        [
            *((f"snapshot {i}", pct(a)) for i, a in enumerate(snaps, start=1)),
            (
                "ensemble (mean of probabilities)",
                f"**{pct(full.get('ensemble_test_accuracy'))}**",
            ),
        ],
    )
    full_dir = full_file.rsplit("/", 1)[0]
    ablated = [  # the curves of each run trained without an ingredient
        Figure(f"{exp.id}/{r['results'].split('/')[0]}/curves.png", f"without {r['removed']}")
        for r in rows[1:]
        if not r["results"].startswith("full/")
    ]
    return [
        Section(
            show.title,
            [
                Text(show.text),
                table,
                settings_table(full["config"], f"settings of `{exp.recipe}`"),
                Figure(f"{full_dir}/curves.png", "the best recipe's training curves"),
                *ablated,
            ],
            level=3,
        ),
        Section("Snapshot-ensemble gain", [gain, numbers_from(full_file)], level=3),
    ]
