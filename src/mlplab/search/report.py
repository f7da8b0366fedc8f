"""The report of a search: its table (``search.md``, ``search.csv``), plot and JSON summary."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mlplab.fileio import atomic_write_bytes, atomic_write_json
from mlplab.machine import host_line, machine_facts
from mlplab.report.document import Document, Section, Table, Text, render_markdown
from mlplab.search.space import STAGES, Param, SearchSpec, smoothed
from mlplab.search.storage import PRUNED, SLOT, STAGE, best_trial, finished


def collect_rows(trials: list[Any], pruning: bool = False) -> list[dict[str, Any]]:
    """The COMPLETE search trials, best first (validation accuracy; earlier trial on ties);
    with ``pruning``, then the pruned ones, and each row's ``state`` and ``updates``."""
    from optuna.trial import TrialState

    rows = [
        {
            "stage": t.user_attrs[STAGE],
            "trial": t.number,
            "slot": int(t.user_attrs[SLOT]),
            "params": dict(t.params),
            "overrides": t.user_attrs.get("overrides", {}),
            "val_accuracy": float(t.value),
            "runs": len(t.user_attrs.get("seeds", [0])),
            "val_sd": t.user_attrs.get("val_sd"),
            "seconds": float(t.user_attrs.get("seconds", float("nan"))),
            "diverged": bool(t.user_attrs.get("diverged")),
            "threads": (t.user_attrs.get("owner") or {}).get("threads"),
            **({"state": _state(t), "updates": t.user_attrs.get("updates")} if pruning else {}),
        }
        for t in trials
        if (t.state == TrialState.COMPLETE or (pruning and finished(t)))
        and STAGE in t.user_attrs
        and t.value is not None
    ]

    def key(r: dict[str, Any]) -> tuple[bool, bool, float, int]:
        pruned = r.get("state", "complete") != "complete"
        return pruned, r["diverged"], -r["val_accuracy"], r["trial"]

    return sorted(rows, key=key)


def _state(trial: Any) -> str:
    """``complete``, or where the pruner stopped the trial: ``pruned at cycle 1`` (``run 2
    cycle 1`` when a trial trains several times)."""
    p = trial.user_attrs.get(PRUNED)
    if not p:
        return "complete"
    unit = "cycle" if "cycle" in p else "epoch"
    run = f"run {p['run'] + 1} " if len(trial.user_attrs.get("seeds", [0])) > 1 else ""
    return f"pruned at {run}{unit} {p[unit]}"


def _done(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of COMPLETE trials (all rows without pruning)."""
    return [r for r in rows if r.get("state", "complete") == "complete"]


def _of(rows: list[dict[str, Any]], stage: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["stage"] == stage]


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _rank(i: int, r: dict[str, Any]) -> str:
    """A complete trial's rank; none for a pruned one (never a candidate for the best)."""
    return str(i) if r.get("state", "complete") == "complete" else ""


def _table(rows: list[dict[str, Any]], params: tuple[Param, ...], pruning: bool) -> Table:
    multi = any(r["runs"] > 1 for r in rows)
    head = ["rank", "stage", "trial", *(p.name for p in params), "val. accuracy (%)"]
    body = []
    for i, r in enumerate(rows, 1):
        cells = [_rank(i, r), r["stage"], str(r["trial"])]
        cells += [p.format(r["params"][p.name]) if p.name in r["params"] else "" for p in params]
        cells.append("diverged" if r["diverged"] else _pct(r["val_accuracy"]))
        cells += [str(r["runs"]), _pct(r["val_sd"])] if multi else []
        cells += [r["state"], str(r["updates"] or "")] if pruning else []
        body.append([*cells, f"{r['seconds']:.1f}"])
    more = ["state", "updates"] if pruning else []
    return Table([*head, *(["runs", "sd (%)"] if multi else []), *more, "seconds"], body)


def _csv(rows: list[dict[str, Any]], params: tuple[Param, ...], pruning: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "rank",
            "stage",
            "trial",
            "slot",
            *(p.name for p in params),
            "val_accuracy",
            "runs",
            "val_sd",
            "seconds",
            "diverged",
            *(["state", "updates"] if pruning else []),
        ]
    )
    for i, r in enumerate(rows, 1):
        sd = "" if r["val_sd"] is None else repr(r["val_sd"])
        w.writerow(
            [
                _rank(i, r),
                r["stage"],
                r["trial"],
                r["slot"],
                *(r["params"].get(p.name, "") for p in params),
                repr(r["val_accuracy"]),
                r["runs"],
                sd,
                f"{r['seconds']:.3f}",
                int(r["diverged"]),
                *([r["state"], r["updates"] or ""] if pruning else []),
            ]
        )
    return buf.getvalue()


def _smoothing(rows: list[dict[str, Any]], spec: SearchSpec) -> dict[str, Any] | None:
    """Per parameter, the smoothed coarse curve, its peak and noise (``smooth`` rule)."""
    coarse = [r for r in rows if r["stage"] == "coarse" and not r["diverged"]]
    if spec.fine_rule.kind != "smooth" or len(coarse) < 2:
        return None
    out = {}
    for p in spec.params:
        pts = [(r["params"][p.name], r["val_accuracy"]) for r in coarse]
        grid, m, noise = smoothed(p, pts, spec.fine_rule.h)
        i = int(m.argmax())
        out[p.name] = {
            "h": spec.fine_rule.h,
            "argmax": float(grid[i]),
            "max": float(m[i]),
            "noise": noise,
            "curve": [grid.tolist(), m.tolist()],
        }
    return out


def _plot(
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    spec: SearchSpec,
    fine: tuple[Param, ...] | None,
    path: Path,
) -> None:
    from mlplab.report.plots import plot_search

    best, smooth, panels = summary["best"], summary["smoothing"] or {}, []
    for p in sorted(spec.params, key=lambda p: p.name != "lam"):
        points = {}
        for stage in STAGES:
            pts = [r for r in rows if r["stage"] == stage and not r["diverged"]]
            if pts:
                points[f"{stage} ({len(pts)}, {pts[0]['runs']} run(s) each)"] = (
                    [r["params"][p.name] for r in pts],
                    [100 * r["val_accuracy"] for r in pts],
                    [100 * (r["val_sd"] or 0) for r in pts],
                )
        sm = smooth.get(p.name)
        fp = next((f for f in fine or () if f.name == p.name), None)
        panels.append(
            {
                "name": p.name,
                "log": p.log,
                "points": points,
                "curve": (sm["curve"][0], [100 * v for v in sm["curve"][1]], 100 * sm["noise"])
                if sm
                else None,
                "interval": (fp.low, fp.high) if fp else None,
                "best": (best["params"][p.name], 100 * best["val_accuracy"]) if best else None,
            }
        )
    plot_search(panels, path, f"{summary['study']}: validation accuracy")


def write_report(study: Any, spec: SearchSpec, out: Path) -> dict[str, Any]:
    """Write ``search.json``, ``search.csv``, ``search.md``, then ``search.png`` into ``out``;
    return the summary (``search.json``): counts, fine interval, best trial, rows, host.

    The figure comes last: if drawing it fails (anything but an ``OSError``), the other
    files are written, any older ``search.png`` is removed, and the summary returned holds
    ``figure_error``, one line saying why."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    pruning = spec.pruner != "none"
    table_rows = collect_rows(trials, pruning)
    rows = _done(table_rows)  # pruned trials: in the table, never the best nor in the plot
    space: list[dict[str, Any]] = next(
        (t.user_attrs["space"] for t in trials if t.user_attrs.get(STAGE) == "fine"), []
    )
    fine = tuple(Param.make(**d) for d in space) or None  # as the fine trials were drawn
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
    counts = {
        s: {
            st.name.lower(): sum(t.user_attrs.get(STAGE) == s and t.state == st for t in trials)
            for st in states
        }
        | {"budget": spec.stage_trials(s)}
        | (
            {"pruned": sum(r["stage"] == s for r in table_rows) - len(_of(rows, s))}
            if pruning
            else {}
        )
        for s in STAGES
    }
    chosen = best_trial(study)
    best = next((dict(r) for r in rows if chosen is not None and r["trial"] == chosen.number), None)
    if best is not None:
        best["from"] = (
            "fine stage" if best["stage"] == "fine" and spec.fine_differs else "all stages"
        )
    threads = sorted({r["threads"] for r in rows if r["threads"]})
    host = machine_facts(int(threads[0]) if len(threads) == 1 else None)
    summary: dict[str, Any] = {
        "study": study.study_name,
        "space": [p.to_text() for p in spec.params],
        "fine_rule": spec.fine_rule.to_text(),
        "fine_interval": [p.to_text() for p in fine] if fine else None,
        "counts": counts,
        "best": best,
        "repeats": {s: spec.stage_repeats(s) for s in STAGES},
        "fine_set": dict(spec.fine_set),
        "top": {s: [r for r in rows if r["stage"] == s][:3] for s in STAGES},
        "all": {
            s: sorted(
                (r for r in rows if r["stage"] == s), key=lambda r: sorted(r["params"].items())
            )
            for s in STAGES
        },
        "smoothing": _smoothing(rows, spec),
        "machine": host,
    }
    how = ""  # the course's search (random draws, no pruning) says nothing of them
    if pruning or spec.sampler != "random":
        summary.update(sampler=spec.sampler, pruner=spec.pruner)
        how = f"; sampler {spec.sampler}, pruner {spec.pruner}"
    if pruning:
        summary["pruned"] = {
            s: [r for r in _of(table_rows, s) if r["state"] != "complete"] for s in STAGES
        }
    text = [
        f"Space {', '.join(summary['space'])}{how}; fine rule {summary['fine_rule']}"
        + (f" -> fine {', '.join(summary['fine_interval'])}" if fine else "")
        + "; complete: "
        + ", ".join(f"{s} {counts[s]['complete']}/{counts[s]['budget']}" for s in STAGES)
        + (
            "; pruned: " + ", ".join(f"{s} {counts[s]['pruned']}" for s in STAGES)
            if pruning
            else ""
        )
        + "."
    ]
    if best:
        how = ", ".join(
            [
                *(f"{k}={v}" for k, v in spec.fine_set.items()),
                f"{spec.fine_repeats} run(s) per trial",
            ]
        )
        text.append(
            f"Best: trial {best['trial']} ({best['stage']}), "
            + ", ".join(f"{k}={v}" for k, v in best["overrides"].items())
            + f", validation accuracy {_pct(best['val_accuracy'])} % (mean of "
            f"{best['runs']} run(s))"
            + (
                f"; chosen among the fine trials only, which train differently ({how})"
                if best["from"] == "fine stage"
                else ""
            )
            + "."
        )
    text.append(f"Host: {host_line(host)}.")
    doc = Document(
        f"Search `{study.study_name}`",
        "",
        [Section("Trials", [*map(Text, text), _table(table_rows, spec.params, pruning)])],
    )
    # the results first: a figure that cannot be drawn must not cost the study's table
    atomic_write_json(out / "search.json", summary)
    atomic_write_bytes(out / "search.csv", _csv(table_rows, spec.params, pruning).encode())
    atomic_write_bytes(out / "search.md", render_markdown(doc).encode())
    try:
        _plot(summary, rows, spec, fine, out / "search.png")
    except OSError:
        raise  # a full disk: the caller's one error line
    except Exception as e:  # a bug in a figure: one line, the results are written
        (out / "search.png").unlink(missing_ok=True)  # not an older study's figure
        summary["figure_error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        atomic_write_json(out / "search.json", summary)  # the report says why it has no figure
    return summary
