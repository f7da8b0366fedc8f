"""The ``mlplab search`` command: parses, calls :func:`mlplab.search.run_search`, prints."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click

from mlplab.clitools import data_option, friendly, sets_option

_friendly = friendly("interrupted (run the same command again to continue)")


@click.command("search")
@click.option(
    "--recipe",
    "-r",
    default="assignment2/search",
    show_default=True,
    help="Training recipe of every trial (shipped name or TOML path).",
)
@click.option(
    "--space",
    "space_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Search-space file (TOML). Default: <recipe>.space beside the recipe, "
    "else lam=log:1e-5:1e-1, 20 trials, fine rule smooth:0.4.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=SCALE:LOW:HIGH",
    help="Searched field (replaces the space file's list), e.g. lam=log:1e-5:1e-1, "
    "eta_max=log:0.01:0.2, hidden=linear:20:100 (one width for every hidden layer).",
)
@click.option("--trials", type=click.IntRange(1), default=None, help="Trials per stage.")
@click.option(
    "--fine-trials",
    type=click.IntRange(0),
    default=None,
    help="Trials of the fine stage (default: --trials; 0: no fine stage).",
)
@click.option(
    "--fine-rule",
    default=None,
    metavar="RULE",
    help="smooth[:H] (region within the noise of the maximum of the coarse scores smoothed "
    "with bandwidth H, in decades for log parameters; default smooth:0.4), top-k[:K[:PAD]] "
    "(span of the K best coarse trials, widened by PAD x its width).",
)
@click.option(
    "--fine-set",
    "fine_sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Recipe override for fine trials only, e.g. --fine-set cycles=3.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1),
    default=None,
    help="Trainings per trial, seeds seed, seed+1, ...; the score is their mean validation "
    "accuracy (default 1, or the space file's; sets both stages unless --fine-repeats).",
)
@click.option(
    "--fine-repeats",
    type=click.IntRange(1),
    default=None,
    help="Trainings per fine trial (default: --repeats, or the space file's [fine] repeats).",
)
@click.option(
    "--sampler",
    default=None,
    metavar="SAMPLER",
    help="How trials draw their values: random (the course's slot draws; default, or the "
    "space file's) or tpe[:N] (Optuna's TPE within each stage's ranges, the first N=10 of a "
    "stage at random).",
)
@click.option(
    "--pruner",
    default=None,
    metavar="PRUNER",
    help="Stop bad trials on their validation accuracy after each cycle (each epoch without "
    "a cyclic schedule): none (default, or the space file's), median[:STARTUP[:WARMUP]] "
    "(below the median of the stage's complete trials; default median:5:0) or "
    "halving[:MIN[:FACTOR]] (successive halving; default halving:1:3).",
)
@sets_option
@click.option("--seed", type=int, default=None, help="Seed of the parameter draws (default 0).")
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Trials at once, as separate processes (at most the cores and the trials); each "
    "training uses the recipe's `threads` BLAS threads whatever W is, so W never changes "
    "the numbers.",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage (default sqlite:///<out>/study.db); postgresql://... to share a "
    "study between machines.",
)
@click.option(
    "--study",
    default=None,
    metavar="NAME",
    help="Study name: letters, digits, '.', '_', '-' (default: from the recipe).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output directory (default runs/<study>).",
)
@data_option
@click.option(
    "--heartbeat",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Seconds between heartbeats of a running trial.",
)
@click.option(
    "--grace",
    type=click.IntRange(2),
    default=60,
    show_default=True,
    help="A running trial without heartbeat for this long is failed and re-run.",
)
@click.option(
    "--restart",
    type=click.Choice(["never", "changed", "always"]),
    default="never",
    show_default=True,
    help="Delete the stored study and start again: never (continue it; refuse other "
    "settings), changed (only if it was started with other settings), always.",
)
@click.option("--quiet", "-q", is_flag=True, help="No per-trial lines.")
@_friendly
def search(
    recipe: str,
    space_file: Path | None,
    params: tuple[str, ...],
    trials: int | None,
    fine_trials: int | None,
    fine_rule: str | None,
    fine_sets: tuple[str, ...],
    repeats: int | None,
    fine_repeats: int | None,
    sampler: str | None,
    pruner: str | None,
    sets: tuple[str, ...],
    seed: int | None,
    workers: int,
    storage: str | None,
    study: str | None,
    out: Path | None,
    data: Path | None,
    heartbeat: int,
    grace: int,
    restart: str,
    quiet: bool,
) -> None:
    """Two-stage random search (coarse, then fine) of recipe fields, by validation accuracy.

    The course's random draws by default; --sampler tpe asks Optuna's TPE instead, and
    --pruner stops trials whose validation accuracy falls behind after a cycle.

    Trials are kept in an Optuna study (SQLite under --out by default): run the same
    command again after an interruption (even kill -9) and it continues where it
    stopped, re-running only unfinished trials with their same parameters. Writes
    search.md, search.csv, search.png and search.json into --out.
    """
    from mlplab.config import parse_set_options
    from mlplab.search import run_search
    from mlplab.search.space import load_spec

    spec = load_spec(
        recipe,
        space_file,
        params=params,
        trials=trials,
        fine_trials=fine_trials,
        fine_rule=fine_rule,
        fine_set=parse_set_options(fine_sets) if fine_sets else None,
        seed=seed,
        repeats=repeats,
        fine_repeats=fine_repeats,
        sampler=sampler,
        pruner=pruner,
    )
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)  # like Ctrl-C: trials FAIL
    try:
        res = run_search(
            recipe,
            spec=spec,
            sets=parse_set_options(sets),
            out=out,
            storage=storage,
            study=study,
            workers=workers,
            data_dir=data,
            restart=restart,
            heartbeat=heartbeat,
            grace=grace,
            quiet=quiet,
            echo=click.echo,
        )
    finally:
        signal.signal(signal.SIGTERM, old)
    print_summary(res.summary)
    if res.figure_error:
        click.echo(
            f"warning: {res.out}/search.png not drawn ({res.figure_error}); the results are "
            "in search.json, search.csv and search.md",
            err=True,
        )
    png = "" if res.figure_error else " search.png,"
    click.echo(f"wrote {res.out}/search.md, search.csv,{png} search.json")
    if res.follow_up:
        click.echo(f"train with the best: {res.follow_up}")


def _pct_sd(r: dict[str, Any]) -> str:
    sd = r.get("val_sd")
    return f"{100 * r['val_accuracy']:.2f} %" + ("" if sd is None else f" ± {100 * sd:.2f}")


def print_summary(summary: dict[str, Any]) -> None:
    """Per stage: complete trials and the top three; the fine interval; the best trial."""
    for stage in ("coarse", "fine"):
        c = summary["counts"][stage]
        if not c["budget"] and not c["complete"]:
            continue
        tops = "; ".join(
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in r["params"].items()
            )
            + (": diverged" if r["diverged"] else f": {_pct_sd(r)}")
            for r in summary["top"][stage]
        )
        pruned = f", {c['pruned']} pruned" if "pruned" in c else ""
        click.echo(f"{stage}: {c['complete']}/{c['budget']} complete{pruned}; top 3: {tops or '-'}")
        if stage == "coarse" and summary["fine_interval"]:
            click.echo(
                f"fine interval ({summary['fine_rule']}): {', '.join(summary['fine_interval'])}"
            )
    b = summary["best"]
    if b is not None:
        shown = ", ".join(f"{k}={v}" for k, v in b["overrides"].items())
        runs = f" (mean of {b['runs']} runs)" if b["runs"] > 1 else ""
        among = " (among the fine trials)" if b["from"] == "fine stage" else ""
        click.echo(
            f"best{among}: trial {b['trial']} ({b['stage']}) {shown}: validation accuracy "
            f"{100 * b['val_accuracy']:.2f} %{runs}"
        )
