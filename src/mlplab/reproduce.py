"""``mlplab reproduce``: run the experiments of DD2424 assignments 2 and 3 (and the bonus
part) from the shipped recipes and write a report (``report.md`` and ``index.html``).

Every number in the report is read from a JSON file written by the run it comes
from, and the report links that file. Trainings are skipped when their directory
already holds results of the same resolved configuration (a content hash), so an
interrupted reproduction continues where it stopped; ``force`` re-runs them.
``quick`` runs the same pipeline on a small subset with few updates.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mlplab.config import Config, load_recipe
from mlplab.data import RawDataset, load_cifar10, make_splits
from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_json, prepare_out_dir
from mlplab.report.document import Document, Figure, Section, Table, Text, md_escape
from mlplab.train.run import cached_experiment, config_hash

PARTS = ("assignment2", "assignment3", "bonus")
# --quick: a small subset and few updates, same pipeline
QUICK = {"split": "2000/500", "n_s_k": "0", "n_s": "25", "record_every": "10"}
QUICK_TRIALS = 2
FINAL_SEEDS = (0, 1, 2)  # the final model is trained with each; the report gives mean ± sd
#: What the course and student reports found, shown next to each result.
REFERENCE = {
    "assignment2/ex3": "≈ 46 %",
    "assignment2/ex4": "≈ 47.5 %",
    "assignment2/overfit": "100 % train",
    "assignment2/final": "51.5-54.5 %",
    "assignment3/3layer": "≈ 52 %",
    "assignment3/3layer-bn": "≈ 53.5 %",
    "assignment3/9layer": "≈ 42 %",
    "assignment3/9layer-bn": "≈ 51 %",
}
# ingredients of bonus/best ablated by the report (each costs a full training)
ABLATED = ("batch-norm", "dropout", "augmentation")

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
    skip = {
        "cyclic": {"eta", "epochs"},
        "constant": {"eta_min", "eta_max", "n_s_resolved", "cycles"},
    }
    hidden = skip.get(resolved.get("schedule", ""), {"eta_min", "eta_max", "n_s_resolved"})
    rows = []
    for k in SETTINGS:
        v = resolved.get(k)
        if k in hidden or (v in (None, 0, 0.0, False) and k not in ("lam", "batch_norm")):
            continue
        rows.append((k.replace("_resolved", ""), f"`{v}`"))
    return Table(("field", "value"), rows, caption=title)


class Reproduction:
    """Runs the parts of the reproduction into ``out`` and collects the report sections."""

    def __init__(
        self,
        out: Path,
        raw: RawDataset,
        data_dir: Path | None,
        *,
        quick: bool,
        force: bool,
        workers: int,
        progress: bool,
    ) -> None:
        self.out, self.raw, self.data_dir = out, raw, data_dir
        self.quick, self.force, self.workers, self.progress = quick, force, workers, progress

    # -- helpers ------------------------------------------------------------------------------
    def recipe(self, name: str, extra: dict[str, str] | None = None) -> Config:
        over = dict(QUICK) if self.quick else {}
        if self.quick:
            base = load_recipe(name)
            over["cycles"] = str(min(base.cycles, 2))
            if base.schedule != "cyclic":
                over.pop("record_every")
        over.update(extra or {})
        return load_recipe(name, over)

    def train(self, name: str, cfg: Config) -> dict[str, Any]:
        return cached_experiment(
            cfg, self.out / name, raw=self.raw, force=self.force, progress=self.progress
        )

    def run_section(
        self, title: str, name: str, recipe: str, text: str, extra: dict[str, str] | None = None
    ) -> Section:
        """Train ``recipe`` (with ``extra`` overrides) into ``out/name``: results, settings,
        curves."""
        res = self.train(name, self.recipe(recipe, extra))
        return Section(
            title,
            [
                Text(text),
                Table(
                    (
                        "test accuracy",
                        "course / reports",
                        "validation accuracy",
                        "training accuracy",
                        "updates",
                        "training time",
                    ),
                    [
                        (
                            f"**{pct(res['test_accuracy'])}**",
                            REFERENCE.get(recipe, "-"),
                            pct(res["val_accuracy"]),
                            pct(res["train_accuracy"]),
                            res["updates"],
                            f"{res['train_seconds']:.1f} s",
                        )
                    ],
                ),
                settings_table(res["config"], f"settings of `{recipe}`"),
                Figure(f"{name}/curves.png", f"{recipe}: cost, loss, accuracy and learning rate"),
                Text(f"Numbers from [{name}/results.json]({name}/results.json)."),
            ],
            level=3,
        )

    def search(self, name: str, recipe: str) -> dict[str, Any]:
        """Run (or continue) the search of ``recipe`` into ``out/name``; return its summary."""
        from mlplab.search import run_search

        quick = {"trials": QUICK_TRIALS, "sets": QUICK} if self.quick else {}
        res = run_search(
            recipe,
            spec=self._spec(recipe),
            sets=quick.get("sets"),
            out=self.out / name,
            workers=self.workers,
            raw=self.raw,
            restart="always" if self.force else "changed",  # other settings: outdated
            quiet=True,
            echo=lambda s: None,
        )
        return res.summary

    def _spec(self, recipe: str) -> Any:
        from mlplab.search.space import load_spec

        return load_spec(recipe, trials=QUICK_TRIALS) if self.quick else load_spec(recipe)

    def search_sections(self, name: str, recipe: str, summary: dict[str, Any]) -> list[Block]:
        runs = summary.get("repeats", {})
        fine_set = summary.get("fine_set") or {}
        how = [f"{k} = {v}" for k, v in fine_set.items()]
        if runs.get("fine", 1) > 1:
            how.append(f"each the mean validation accuracy of {runs['fine']} seeds")
        best = summary.get("best") or {}
        blocks: list[Block] = [
            Text(
                f"Coarse-to-fine search with `{recipe}`: space {', '.join(summary['space'])}, "
                f"fine rule `{summary['fine_rule']}`"
                + (
                    f", fine interval {', '.join(summary['fine_interval'])}"
                    if summary.get("fine_interval")
                    else ""
                )
                + "."
                + (f" Fine trials: {'; '.join(how)}." if how else "")
                + (
                    " The best setting is chosen among the fine trials, whose scores are not "
                    "comparable with the coarse ones."
                    if best.get("from") == "fine stage"
                    else ""
                )
            )
        ]
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
        blocks.append(
            Figure(f"{name}/search.png", "validation accuracy against the searched parameter(s)")
        )
        blocks.append(
            Text(
                f"Full table: [{name}/search.md]({name}/search.md), numbers from "
                f"[{name}/search.json]({name}/search.json)."
            )
        )
        return blocks

    # -- parts --------------------------------------------------------------------------------
    def steps(self, part: str) -> list[tuple[str, Callable[[], list[Section]]]]:
        return {
            "assignment2": self.assignment2,
            "assignment3": self.assignment3,
            "bonus": self.bonus,
        }[part]()

    def assignment2(self) -> list[tuple[str, Callable[[], list[Section]]]]:
        head = [
            Section(
                "Assignment 2: a two-layer network",
                [
                    Text(
                        "A 3072-50-10 network with ReLU, cross-entropy loss + λ·ΣW², "
                        "mini-batch gradient descent with a cyclical learning rate."
                    )
                ],
            )
        ]

        def gradcheck() -> list[Section]:
            return [*head, self.gradcheck_section()]

        def figures() -> list[Section]:
            return [
                self.run_section(
                    "Figure 3: one cycle",
                    "a2-ex3",
                    "assignment2/ex3",
                    "One cycle of the triangular schedule, n_s = 500.",
                ),
                self.run_section(
                    "Figure 4: three cycles",
                    "a2-ex4",
                    "assignment2/ex4",
                    "Three cycles, n_s = 800.",
                ),
            ]

        def search() -> list[Section]:
            s = self.search("a2-search", "assignment2/search")
            return [
                Section(
                    "Coarse-to-fine search for λ",
                    self.search_sections("a2-search", "assignment2/search", s),
                    level=3,
                )
            ]

        def final() -> list[Section]:
            summary = json.loads((self.out / "a2-search" / "search.json").read_text())
            best = summary["best"]["overrides"]
            return [self.final_section("a2-final", "assignment2/final", best, FINAL_SEEDS)]

        def overfit() -> list[Section]:
            return [
                self.run_section(
                    "Sanity check: overfitting 100 samples",
                    "a2-overfit",
                    "assignment2/overfit",
                    "With λ = 0 the network must reach 100 % training accuracy on 100 samples.",
                )
            ]

        return [
            ("assignment 2: gradient check", gradcheck),
            ("assignment 2: figures 3 and 4", figures),
            ("assignment 2: λ search", search),
            ("assignment 2: final model", final),
            ("assignment 2: overfitting check", overfit),
        ]

    def final_section(
        self, name: str, recipe: str, best: dict[str, str], seeds: tuple[int, ...]
    ) -> Section:
        """Train ``recipe`` with the search's best setting once per seed: mean ± sd, each run."""
        runs = []
        for seed in seeds:
            cfg = self.recipe(recipe, {**best, "seed": str(seed)})
            runs.append((seed, self.train(f"{name}/seed-{seed}", cfg)))
        tests = [r["test_accuracy"] for _, r in runs]
        mean, sd = float(np.mean(tests)), float(np.std(tests, ddof=1)) if len(tests) > 1 else 0.0
        first = runs[0][1]
        blocks: list[Block] = []
        if "test_confusion" in first:
            from mlplab.report.plots import plot_confusion

            fig = f"{name}/seed-{seeds[0]}/confusion.png"
            plot_confusion(first["test_confusion"], self.raw.classes, self.out / fig)
            classes = self.raw.classes
            per = first["test_per_class_accuracy"]
            blocks = [
                Table(
                    classes,
                    [[pct(a) for a in per]],
                    caption=f"per-class test accuracy, seed {seeds[0]}",
                ),
                Figure(
                    fig, f"confusion matrix of seed {seeds[0]} (rows true class, columns predicted)"
                ),
            ]
        chosen = ", ".join(f"{k} = {v}" for k, v in best.items())
        rows = [
            (
                str(seed),
                pct(r["test_accuracy"]),
                pct(r["val_accuracy"]),
                pct(r["train_accuracy"]),
                f"{r['train_seconds']:.1f} s",
                f"[results.json]({name}/seed-{seed}/results.json)",
            )
            for seed, r in runs
        ]
        return Section(
            "The final model: best λ on 49,000 images",
            [
                Text(
                    f"The best setting of the search ({chosen}) trained on split `49k` with "
                    f"{len(seeds)} seeds (each its own split, initialisation and batch order): "
                    f"test accuracy **{100 * mean:.2f} ± {100 * sd:.2f} %** (mean ± sd); course "
                    f"and reports: {REFERENCE.get(recipe, '-')}."
                ),
                Table(("seed", "test", "validation", "training", "training time", "numbers"), rows),
                *blocks,
                settings_table(first["config"], f"settings of `{recipe}` (seed {seeds[0]})"),
                Figure(f"{name}/seed-{seeds[0]}/curves.png", f"{recipe}, seed {seeds[0]}"),
            ],
            level=3,
        )

    def gradcheck_section(self) -> Section:
        from mlplab.gradcheck import gradcheck
        from mlplab.nn.network import Network

        path = self.out / "a2-gradcheck" / "results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        cases = [
            ("3072-50-10, first 20 dims, 5 samples", 20, 5, [50], False),
            ("3072-50-10, all 3072 dims, 20 samples", 3072, 20, [50], False),
            ("3072-50-50-10 with batch norm, 20 dims, 10 samples", 20, 10, [50, 50], True),
        ]
        for label, dims, n, hidden, bn in cases:
            rng = np.random.default_rng(0)
            x = self.raw.x_train[:n].astype(np.float64) / 255
            x = (x - x.mean(0)) / (x.std(0) + 1e-8)
            net = Network.build(
                dims,
                hidden,
                len(self.raw.classes),
                rng=rng,
                init="he",
                batch_norm=bn,
                dtype="float64",
            )
            t = time.perf_counter()
            rep = gradcheck(
                net,
                x[:, :dims],
                self.raw.y_train[:n].astype(np.int64),
                0.01,
                method="vectorized",
            )
            rows.append({"case": label, "seconds": time.perf_counter() - t, **rep.to_dict()})
        atomic_write_json(path, rows)
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
        return Section(
            "Gradient check",
            [
                Text(
                    "Analytic gradients of every parameter against centred differences "
                    "(float64, h = 1e-5, λ = 0.01, real CIFAR-10 samples); relative error "
                    "|a−n| / max(1e-10, |a|+|n|)."
                ),
                Table(
                    (
                        "network",
                        "parameter",
                        "shape",
                        "max rel. error",
                        "mean rel. error",
                        "max abs. error",
                    ),
                    table_rows,
                ),
                Text("Numbers from [a2-gradcheck/results.json](a2-gradcheck/results.json)."),
            ],
            level=3,
        )

    def assignment3(self) -> list[tuple[str, Callable[[], list[Section]]]]:
        def comparisons() -> list[Section]:
            secs = [
                Section(
                    "Assignment 3: k-layer networks with batch normalisation",
                    [
                        Text(
                            "He initialisation, λ = 0.005, two cycles with n_s = 5 epochs on "
                            "split `45k`; batch norm before every ReLU."
                        )
                    ],
                )
            ]
            from mlplab.report.plots import plot_runs

            rows, runs = [], []
            for depth in ("3layer", "9layer"):
                res = {
                    bn: self.train(f"a3-{depth}{bn}", self.recipe(f"assignment3/{depth}{bn}"))
                    for bn in ("", "-bn")
                }
                rows.append(
                    (
                        depth.replace("layer", " layers"),
                        f"**{pct(res['-bn']['test_accuracy'])}**",
                        REFERENCE[f"assignment3/{depth}-bn"],
                        pct(res[""]["test_accuracy"]),
                        REFERENCE[f"assignment3/{depth}"],
                        f"[with BN](a3-{depth}-bn/results.json), "
                        f"[without](a3-{depth}/results.json)",
                    )
                )
                runs += [
                    (f"{depth}{bn or ' without BN'}", res[bn]["history"]) for bn in ("-bn", "")
                ]
            plot_runs(runs, self.out / "a3-compare.png")
            secs.append(
                Section(
                    "With and without batch norm",
                    [
                        Table(
                            (
                                "network",
                                "test accuracy with BN",
                                "course / reports",
                                "without BN",
                                "course / reports",
                                "numbers from",
                            ),
                            rows,
                        ),
                        settings_table(
                            self.train("a3-3layer-bn", self.recipe("assignment3/3layer-bn"))[
                                "config"
                            ],
                            "settings of `assignment3/3layer-bn`",
                        ),
                        Figure("a3-compare.png", "the four runs: validation accuracy and loss"),
                        Figure("a3-3layer-bn/curves.png", "3 layers with batch norm"),
                        Figure("a3-9layer-bn/curves.png", "9 layers with batch norm"),
                        Figure("a3-9layer/curves.png", "9 layers without batch norm"),
                    ],
                    level=3,
                )
            )
            return secs

        def search() -> list[Section]:
            s = self.search("a3-search", "assignment3/search-bn")
            return [
                Section(
                    "λ search for the 3-layer net with batch norm",
                    self.search_sections("a3-search", "assignment3/search-bn", s),
                    level=3,
                )
            ]

        def sensitivity() -> list[Section]:
            from mlplab.train.sensitivity import run_sensitivity

            cfg = self.recipe("assignment3/sensitivity")
            rows = run_sensitivity(
                cfg, self.out / "a3-sensitivity", self.raw, force=self.force, progress=self.progress
            )
            by = {(r["sigma"], r["batch_norm"]): r for r in rows}
            from mlplab.report.plots import plot_runs

            base = self.out / "a3-sensitivity"
            plot_runs(
                [
                    (
                        f"σ={r['sigma']:g}{' BN' if r['batch_norm'] else ''}",
                        json.loads((base / r["results"]).read_text())["history"],
                    )
                    for r in rows
                ],
                base / "compare.png",
            )
            return [
                Section(
                    "Sensitivity to initialisation",
                    [
                        Text(
                            "Every weight drawn from N(0, σ²); without batch norm small σ "
                            "kills the signal, with batch norm the network learns anyway."
                        ),
                        Table(
                            ("σ", "test accuracy with BN", "without BN"),
                            [
                                (
                                    f"{s:g}",
                                    pct(by[(s, True)]["test_accuracy"]),
                                    pct(by[(s, False)]["test_accuracy"]),
                                )
                                for s in dict.fromkeys(r["sigma"] for r in rows)
                            ],
                        ),
                        Figure(
                            "a3-sensitivity/sensitivity.png",
                            "loss curves: with BN left, without right, one row per σ",
                        ),
                        Figure("a3-sensitivity/compare.png", "all six runs on one axis"),
                        Text(
                            "Numbers from [a3-sensitivity/sensitivity.json]"
                            "(a3-sensitivity/sensitivity.json) and the runs' results.json files."
                        ),
                    ],
                    level=3,
                )
            ]

        return [
            ("assignment 3: BN comparisons", comparisons),
            ("assignment 3: λ search", search),
            ("assignment 3: initialisation study", sensitivity),
        ]

    def bonus(self) -> list[tuple[str, Callable[[], list[Section]]]]:
        def lr_range() -> list[Section]:
            from mlplab.train.lr_range import lr_range_test

            cfg = self.recipe("assignment2/ex3")
            d = self.out / "bonus-lr-range"
            d.mkdir(parents=True, exist_ok=True)
            path, h = d / "lr_range.json", config_hash(cfg)
            res = json.loads(path.read_text()) if path.is_file() else {}
            if res.get("config_hash") != h or self.force:
                rng = np.random.default_rng(cfg.seed)
                splits = make_splits(self.raw, cfg.split, rng, dtype=cfg.dtype)
                res = lr_range_test(
                    cfg, splits, rng, d, progress=self.progress, epochs=2 if self.quick else 8
                )
                res["config_hash"] = h
                atomic_write_json(path, res)
            return [
                Section("Bonus: beyond the course", []),
                Section(
                    "Learning-rate range test",
                    [
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
                                    "-"
                                    if res["diverged_at_lr"] is None
                                    else f"{res['diverged_at_lr']:.3g}",
                                )
                            ],
                        ),
                        Figure("bonus-lr-range/lr_range.png", "accuracy and loss against η"),
                        Text(
                            "Numbers from [bonus-lr-range/lr_range.json]"
                            "(bonus-lr-range/lr_range.json)."
                        ),
                    ],
                    level=3,
                ),
            ]

        def ablation() -> list[Section]:
            from mlplab.train.ablation import run_ablation

            cfg = self.recipe("bonus/best")
            rows = run_ablation(
                cfg,
                self.out / "bonus-ablation",
                self.raw,
                only=ABLATED,
                force=self.force,
                progress=self.progress,
            )
            full = json.loads((self.out / "bonus-ablation" / "full" / "results.json").read_text())
            snaps = full.get("snapshot_test_accuracies", [])
            return [
                Section(
                    "The best recipe and its ablation",
                    [
                        Text(
                            "`bonus/best`: the full recipe, then each ingredient removed in turn."
                        ),
                        Table(
                            ("removed", "test accuracy", "change", "wall time", "numbers from"),
                            [
                                (
                                    r["removed"],
                                    pct(r["test_accuracy"]),
                                    f"{100 * r['delta']:+.2f}",
                                    f"{r['wall_seconds'] / 60:.1f} min",
                                    f"[results.json](bonus-ablation/{r['results'].split(' ')[0]})",
                                )
                                for r in rows
                            ],
                        ),
                        settings_table(full["config"], "settings of `bonus/best`"),
                        Figure(
                            "bonus-ablation/full/curves.png", "the best recipe's training curves"
                        ),
                    ],
                    level=3,
                ),
                Section(
                    "Snapshot-ensemble gain",
                    [
                        Table(
                            ("model", "test accuracy"),
                            [
                                *((f"snapshot {i}", pct(a)) for i, a in enumerate(snaps, start=1)),
                                (
                                    "ensemble (mean of probabilities)",
                                    f"**{pct(full.get('ensemble_test_accuracy'))}**",
                                ),
                            ],
                        ),
                        Text(
                            "Numbers from [bonus-ablation/full/results.json]"
                            "(bonus-ablation/full/results.json)."
                        ),
                    ],
                    level=3,
                ),
            ]

        return [("bonus: learning-rate range test", lr_range), ("bonus: ablation", ablation)]


Block = Table | Figure | Text


def reproduce(
    part: str,
    out: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    workers: int = 1,
    quick: bool = False,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run ``part`` (``assignment2``, ``assignment3``, ``bonus`` or ``all``); return index.html."""
    if part not in (*PARTS, "all"):
        raise MlplabError(f"unknown part {part!r}; choose {', '.join(PARTS)} or all")
    outp = prepare_out_dir(out, overwrite=True)
    start = time.perf_counter()
    raw = load_cifar10(data_dir, progress=progress)
    rep = Reproduction(
        outp,
        raw,
        Path(data_dir) if data_dir else None,
        quick=quick,
        force=force,
        workers=workers,
        progress=progress,
    )
    parts = list(PARTS) if part == "all" else [part]
    steps = [s for p in parts for s in rep.steps(p)]
    sections: list[Section] = []
    bar = tqdm(
        total=len(steps), unit="experiment", disable=not progress, position=1, desc="reproduce"
    )
    for i, (label, fn) in enumerate(steps, start=1):
        echo(f"[{i}/{len(steps)}] {label}")
        bar.set_description(label)
        sections += fn()
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    banner = (
        "QUICK RUN: a small subset with few updates, a smoke test; these numbers are not "
        "comparable with the course's."
        if quick
        else ""
    )
    doc = Document(
        f"mlplab reproduction: {part}",
        banner,
        [
            Section(
                "About this report",
                [
                    Text(
                        f"Produced by `mlplab reproduce {part}{' --quick' if quick else ''}` "
                        f"from the shipped recipes on {md_escape(raw.source)}; wall time of this "
                        f"invocation {seconds / 60:.1f} min (experiments already done were "
                        "reused). Every number links the JSON file it was read from."
                    )
                ],
            ),
            *sections,
        ],
    )
    atomic_write_json(
        outp / "reproduce.json",
        {"part": part, "quick": quick, "seconds": seconds, "data": raw.source},
    )
    _, page = doc.write(outp)
    return page
