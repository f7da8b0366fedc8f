"""Results of a search: a table (Markdown and CSV, best first), a plot and a JSON summary."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplab.fileio import atomic_write_bytes, atomic_write_json
from mlplab.search.space import STAGES, Param, SearchSpec
from mlplab.search.study import ATTR_FINE, SLOT, STAGE, best_trial, fine_differs

COLORS = {"coarse": "tab:blue", "fine": "tab:orange"}


@dataclass(frozen=True)
class Row:
    """One COMPLETE trial."""

    stage: str
    number: int
    slot: int
    params: dict[str, Any]
    val_accuracy: float
    seconds: float
    diverged: bool
    runs: int = 1
    val_sd: float | None = None


def collect_rows(trials: list[Any]) -> list[Row]:
    """The COMPLETE search trials, best first (validation accuracy; earlier trial on ties)."""
    from optuna.trial import TrialState

    rows = [
        Row(
            stage=t.user_attrs[STAGE],
            number=t.number,
            slot=int(t.user_attrs[SLOT]),
            params=dict(t.params),
            val_accuracy=float(t.value),
            seconds=float(t.user_attrs.get("seconds", math.nan)),
            diverged=bool(t.user_attrs.get("diverged")),
            runs=len(t.user_attrs.get("seeds", [0])),
            val_sd=t.user_attrs.get("val_sd"),
        )
        for t in trials
        if t.state == TrialState.COMPLETE and STAGE in t.user_attrs and t.value is not None
    ]
    rows.sort(key=lambda r: (r.diverged, -r.val_accuracy, r.number))
    return rows


def _acc(r: Row) -> str:
    return "diverged" if r.diverged else f"{100 * r.val_accuracy:.2f}"


def _sd(r: Row) -> str:
    return "" if r.val_sd is None else f"{100 * r.val_sd:.2f}"


def markdown_table(rows: list[Row], params: tuple[Param, ...]) -> str:
    """``| rank | stage | trial | <params> | validation accuracy (%) | seconds |``.

    With trials of several trainings, the accuracy is their mean and two columns
    follow it: ``runs`` and the standard deviation ``sd`` over the runs.
    """
    multi = any(r.runs > 1 for r in rows)
    head = ["rank", "stage", "trial", *(p.name for p in params), "val. accuracy (%)"]
    head += ["runs", "sd (%)"] if multi else []
    head.append("seconds")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for i, r in enumerate(rows, 1):
        cells = [str(i), r.stage, str(r.number)]
        cells += [p.format(r.params[p.name]) if p.name in r.params else "" for p in params]
        cells.append(_acc(r))
        cells += [str(r.runs), _sd(r)] if multi else []
        cells.append(f"{r.seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[Row], params: tuple[Param, ...]) -> str:
    """CSV of the rows: full-precision parameters, accuracy as a fraction."""
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
        ]
    )
    for i, r in enumerate(rows, 1):
        w.writerow(
            [
                i,
                r.stage,
                r.number,
                r.slot,
                *(r.params.get(p.name, "") for p in params),
                repr(r.val_accuracy),
                r.runs,
                "" if r.val_sd is None else repr(r.val_sd),
                f"{r.seconds:.3f}",
                int(r.diverged),
            ]
        )
    return buf.getvalue()


def plot_search(
    rows: list[Row],
    params: tuple[Param, ...],
    path: str | Path,
    *,
    fine: tuple[Param, ...] | None = None,
    best: Row | None = None,
    title: str = "",
) -> None:
    """Validation accuracy against each searched parameter (log axis for log parameters).

    Coarse and fine trials in different colours, ± one standard deviation over the
    runs of trials with several trainings, the fine interval shaded, ``best`` starred.
    ``lam`` comes first when it is searched.
    """
    import matplotlib.pyplot as plt

    from mlplab.report.plots import save_figure

    order = sorted(params, key=lambda p: p.name != "lam")
    fig, axes = plt.subplots(1, len(order), figsize=(6.4 * len(order), 4.4), squeeze=False)
    ok = [r for r in rows if not r.diverged]
    for ax, p in zip(axes[0], order, strict=True):
        for stage in STAGES:
            pts = [r for r in ok if r.stage == stage and p.name in r.params]
            if pts:
                runs = sorted({r.runs for r in pts})
                each = f", {runs[0]} runs each" if runs == [runs[0]] and runs[0] > 1 else ""
                ax.scatter(
                    [r.params[p.name] for r in pts],
                    [100 * r.val_accuracy for r in pts],
                    color=COLORS[stage],
                    label=f"{stage} ({len(pts)}{each})",
                    alpha=0.85,
                    edgecolors="none",
                )
            sd = [r for r in pts if r.val_sd is not None]
            if sd:
                ax.errorbar(
                    [r.params[p.name] for r in sd],
                    [100 * r.val_accuracy for r in sd],
                    yerr=[100 * float(r.val_sd) for r in sd],  # type: ignore[arg-type]
                    fmt="none",
                    ecolor=COLORS[stage],
                    alpha=0.4,
                )
        if fine:
            fp = next((f for f in fine if f.name == p.name), None)
            if fp is not None:
                ax.axvspan(fp.low, fp.high, color=COLORS["fine"], alpha=0.12, label="fine interval")
        if best is not None and p.name in best.params:
            ax.scatter(
                [best.params[p.name]],
                [100 * best.val_accuracy],
                marker="*",
                s=220,
                color="tab:red",
                zorder=5,
                label="best",
            )
        if p.log:
            ax.set_xscale("log")
            ax.set_xlim(p.low / 1.5, p.high * 1.5)
        elif p.high > p.low:
            m = 0.05 * (p.high - p.low)
            ax.set_xlim(p.low - m, p.high + m)
        ax.set_xlabel("λ (lam)" if p.name == "lam" else p.name)
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def fine_space_of(study: Any) -> tuple[Param, ...] | None:
    stored = study.user_attrs.get(ATTR_FINE)
    if not stored:
        return None
    return tuple(Param.make(d["name"], d["scale"], d["low"], d["high"]) for d in stored["params"])


def write_report(study: Any, spec: SearchSpec, out: str | Path) -> dict[str, Any]:
    """Write ``search.md``, ``search.csv``, ``search.png`` and ``search.json`` into ``out``.

    Returns the summary (also ``search.json``): counts per stage, fine interval, best
    trial, the top rows of each stage.
    """
    from optuna.trial import TrialState

    out = Path(out)
    trials = study.get_trials(deepcopy=False)
    rows = collect_rows(trials)
    fine = fine_space_of(study)
    params = spec.params
    counts = {
        s: {
            st.name.lower(): sum(
                1 for t in trials if t.user_attrs.get(STAGE) == s and t.state == st
            )
            for st in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL)
        }
        for s in STAGES
    }
    for s in STAGES:
        counts[s]["budget"] = spec.stage_trials(s)
    chosen = best_trial(study)
    best = next((r for r in rows if chosen is not None and r.number == chosen.number), None)
    only_fine = best is not None and best.stage == "fine" and fine_differs(study)
    summary: dict[str, Any] = {
        "study": study.study_name,
        "space": [p.to_text() for p in params],
        "fine_rule": spec.fine_rule.to_text(),
        "fine_interval": [p.to_text() for p in fine] if fine else None,
        "counts": counts,
        "best": None
        if best is None
        else {
            "trial": best.number,
            "stage": best.stage,
            "params": best.params,
            "val_accuracy": best.val_accuracy,
            "val_sd": best.val_sd,
            "runs": best.runs,
            "from": "fine stage" if only_fine else "all stages",
        },
        "repeats": {s: spec.stage_repeats(s) for s in STAGES},
        "fine_set": dict(spec.fine_set),
        "top": {s: [_row_dict(r) for r in rows if r.stage == s][:3] for s in STAGES},
    }
    md = [f"# Search `{study.study_name}`", ""]
    md.append(
        f"Space: {', '.join(p.to_text() for p in params)}; fine rule "
        f"{spec.fine_rule.to_text()}"
        + (f" -> fine {', '.join(p.to_text() for p in fine)}" if fine else "")
        + "."
    )
    md.append("")
    md.append(
        "Complete trials: "
        + ", ".join(f"{s} {counts[s]['complete']}/{counts[s]['budget']}" for s in STAGES)
        + (
            f"; best: trial {best.number} ({best.stage}), "
            f"{', '.join(f'{k}={v}' for k, v in best.params.items())}, "
            f"validation accuracy {100 * best.val_accuracy:.2f} %"
            + (f" (mean of {best.runs} runs)" if best.runs > 1 else "")
            + (
                " (chosen among the fine trials only: they train differently "
                f"({_how(spec)}), so their scores are not comparable with the coarse ones)"
                if only_fine
                else ""
            )
            if best
            else ""
        )
        + "."
    )
    md += ["", markdown_table(rows, params)]
    atomic_write_bytes(out / "search.md", "\n".join(md).encode())
    atomic_write_bytes(out / "search.csv", csv_text(rows, params).encode())
    plot_search(
        rows,
        params,
        out / "search.png",
        fine=fine,
        best=best,
        title=f"{study.study_name}: validation accuracy",
    )
    atomic_write_json(out / "search.json", summary)
    return summary


def _how(spec: SearchSpec) -> str:
    """How fine trials differ from coarse ones, e.g. ``cycles=3, 3 runs per trial``."""
    parts = [f"{k}={v}" for k, v in spec.fine_set.items()]
    if spec.fine_repeats != spec.repeats:
        parts.append(f"{spec.fine_repeats} run(s) per trial instead of {spec.repeats}")
    return ", ".join(parts)


def _row_dict(r: Row) -> dict[str, Any]:
    return {
        "trial": r.number,
        "slot": r.slot,
        "params": r.params,
        "val_accuracy": r.val_accuracy,
        "runs": r.runs,
        "val_sd": r.val_sd,
        "seconds": r.seconds,
        "diverged": r.diverged,
    }
