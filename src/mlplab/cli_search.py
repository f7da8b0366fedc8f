"""The ``mlplab search`` command: a durable, parallel two-stage hyper-parameter search."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import click

from mlplab.clitools import friendly
from mlplab.errors import ConfigError, MlplabError

_friendly = friendly("interrupted (run the same command again to continue)")


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def search_settings(cfg: Any, spec: Any) -> dict[str, Any]:
    """What a study must keep between runs: the training configuration and the space."""
    rec = cfg.to_dict()
    rec.pop("name", None)
    rec.pop("description", None)
    space = spec.to_dict()
    space.pop("trials", None)
    space.pop("fine_trials", None)
    return json.loads(json.dumps({"recipe": rec, "space": space}))


def check_search_config(cfg: Any, spec: Any) -> None:
    """Refuse recipes without validation data, and spaces whose bounds make invalid recipes."""
    from mlplab.config import apply_overrides
    from mlplab.data import parse_split

    name, sizes = parse_split(cfg.split)
    if name == "all" or (sizes is not None and sizes[1] == 0):
        raise ConfigError(
            f"recipe {cfg.name}: the search scores validation accuracy, but split "
            f"{cfg.split!r} has no validation part (use e.g. 45k)"
        )
    for stage_set in ({}, spec.fine_set):
        for p in spec.params:
            for v in (p.low, p.high):
                apply_overrides(cfg, {**stage_set, p.name: p.override(v, cfg)})


def remaining(study: Any, spec: Any) -> bool:
    """Whether some stage still lacks COMPLETE trials."""
    from optuna.trial import TrialState

    from mlplab.search.space import STAGES
    from mlplab.search.study import SLOT, STAGE

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for s in STAGES:
        done = {t.user_attrs.get(SLOT) for t in trials if t.user_attrs.get(STAGE) == s}
        if any(k not in done for k in range(spec.stage_trials(s))):
            return True
    return False


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
    "else lam=log:1e-5:1e-1, 20 trials, fine rule top-k:3.",
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
    help="top-k[:K[:PAD]] (span of the K best coarse trials, in log space for log "
    "parameters, widened by PAD x its width) or around-best[:FRACTION] (best ± 20 %).",
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
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a recipe field.")
@click.option("--seed", type=int, default=None, help="Seed of the parameter draws (default 0).")
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Trials at once, as separate processes (BLAS threads: cores // W each).",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage (default sqlite:///<out>/study.db); postgresql://... to share a "
    "study between machines.",
)
@click.option("--study", default=None, metavar="NAME", help="Study name (default: from recipe).")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output directory (default runs/<study>).",
)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="CIFAR-10 directory.")
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

    Trials are kept in an Optuna study (SQLite under --out by default): run the same
    command again after an interruption (even kill -9) and it continues where it
    stopped, re-running only unfinished trials with their same parameters. Writes
    search.md, search.csv, search.png and search.json into --out.
    """
    from mlplab.config import load_recipe, parse_set_options
    from mlplab.fileio import prepare_out_dir
    from mlplab.search.report import write_report
    from mlplab.search.space import build_spec, read_space_file, space_file_for
    from mlplab.search.study import (
        StudySettingsChanged,
        create_or_check_study,
        default_storage,
        default_study_name,
        delete_study,
        locked,
        open_storage,
        redact,
        storage_errors,
    )
    from mlplab.search.worker import Plan, run_worker, spawn_workers

    if grace <= heartbeat:
        raise MlplabError(f"--grace ({grace} s) must exceed --heartbeat ({heartbeat} s)")
    overrides = parse_set_options(sets)
    cfg = load_recipe(recipe, overrides)
    source = space_file if space_file is not None else space_file_for(recipe)
    if space_file is not None and not space_file.is_file():
        raise ConfigError(f"search space file not found: {space_file}")
    space_data = read_space_file(source)
    spec = build_spec(
        space_data,
        params=params,
        trials=trials,
        fine_trials=fine_trials,
        fine_rule=fine_rule,
        fine_set=parse_set_options(fine_sets) if fine_sets else None,
        seed=seed,
        repeats=repeats,
        fine_repeats=fine_repeats,
        label=str(source or "default search space"),
    )
    check_search_config(cfg, spec)
    name = study or default_study_name(cfg.name)
    out = out or Path("runs") / name
    url = storage or default_storage(out)
    prepare_out_dir(out, overwrite=True)
    st = open_storage(url, heartbeat=heartbeat, grace=grace)
    settings = search_settings(cfg, spec)
    with storage_errors(url), locked(url, name):
        if restart == "always" and delete_study(name, st):
            click.echo(f"deleted study {name} and its trials (--restart always)")
        try:
            the_study = create_or_check_study(name, st, url, settings)
        except StudySettingsChanged as e:
            if restart != "changed":
                raise
            delete_study(name, st)
            click.echo(
                f"study {name} was started with other settings ({'; '.join(e.diffs[:4])}): "
                "deleted it and its trials (--restart changed)"
            )
            the_study = create_or_check_study(name, st, url, settings)
    runs = {s: spec.stage_repeats(s) for s in ("coarse", "fine")}
    click.echo(
        f"study {name} on {redact(url)}: {', '.join(p.to_text() for p in spec.params)}; "
        f"{spec.trials} coarse + {spec.fine_trials} fine trials"
        + (f" ({runs['coarse']} + {runs['fine']} trainings each)" if max(runs.values()) > 1 else "")
        + (f", fine stage with {_sets(spec.fine_set)}" if spec.fine_set else "")
        + f", fine rule {spec.fine_rule.to_text()}, {workers} worker(s)"
    )
    plan = Plan(
        recipe=recipe,
        sets=overrides,
        spec=spec.to_dict(),
        study=name,
        storage=url,
        heartbeat=heartbeat,
        grace=grace,
        poll=min(1.0, heartbeat / 2),
        quiet=quiet,
    )
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        with storage_errors(url):
            todo = remaining(the_study, spec)
        if todo:
            from mlplab.data import load_cifar10, locate_data

            located = locate_data(data, progress=not quiet)
            plan.data_dir = str(located)
            raw = load_cifar10(located, progress=not quiet)  # once: fills the cache for workers
            if workers == 1:
                run_worker(plan, raw=raw)
            else:
                del raw
                spawn_workers(plan, workers)
    finally:
        signal.signal(signal.SIGTERM, old)
    with storage_errors(url):
        summary = write_report(the_study, spec, out)
    _print_summary(summary)
    click.echo(f"wrote {out}/search.md, search.csv, search.png, search.json")
    if summary["best"] is not None:
        hint = "" if storage is None else f" --storage {redact(url)}"
        final = space_data.get("final", "RECIPE")
        click.echo(f"train with the best: mlplab train --recipe {final} --from-study {name}{hint}")


def _pct_sd(r: dict[str, Any]) -> str:
    sd = r.get("val_sd")
    return f"{100 * r['val_accuracy']:.2f} %" + ("" if sd is None else f" ± {100 * sd:.2f}")


def _sets(d: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def _print_summary(summary: dict[str, Any]) -> None:
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
        click.echo(f"{stage}: {c['complete']}/{c['budget']} complete; top 3: {tops or '-'}")
        if stage == "coarse" and summary["fine_interval"]:
            click.echo(
                f"fine interval ({summary['fine_rule']}): {', '.join(summary['fine_interval'])}"
            )
    b = summary["best"]
    if b is not None:
        shown = ", ".join(f"{k}={v}" for k, v in b["params"].items())
        runs = f" (mean of {b['runs']} runs)" if b.get("runs", 1) > 1 else ""
        among = " (among the fine trials)" if b.get("from") == "fine stage" else ""
        click.echo(
            f"best{among}: trial {b['trial']} ({b['stage']}) {shown}: validation accuracy "
            f"{100 * b['val_accuracy']:.2f} %{runs}"
        )
