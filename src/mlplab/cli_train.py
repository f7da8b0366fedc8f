"""``mlplab train`` and ``mlplab reproduce``: parse, call the library, print."""

from __future__ import annotations

from pathlib import Path

import click

from mlplab.clitools import data_option, force_option, friendly, quiet_option
from mlplab.errors import MlplabError

_friendly = friendly()


@click.command()
@click.option(
    "--recipe",
    "-r",
    default=None,
    help="Shipped recipe name (see `mlplab recipes`) or path to a TOML file.",
)
@data_option
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory (default: runs/<recipe name>).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe field, e.g. --set lam=0.005 --set hidden=50,50.",
)
@click.option(
    "--from-study",
    "study",
    default=None,
    metavar="NAME",
    help="Take the best hyper-parameters of this search study (see `mlplab search`).",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Storage of --from-study (default: sqlite file of `mlplab search`'s --out).",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Continue the interrupted run in DIR from its last checkpoint.",
)
@click.option("--overwrite", is_flag=True, help="Allow writing into a directory holding a run.")
@quiet_option
@_friendly
def train(
    recipe: str | None,
    data: Path | None,
    out: Path | None,
    sets: tuple[str, ...],
    study: str | None,
    storage: str | None,
    resume: Path | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train the network of a recipe and write results.json, curves.png and the model.

    A checkpoint is written every `checkpoint_every` updates (a recipe field); a run
    that was interrupted (even by kill -9) continues with `--resume DIR` and ends
    with exactly the numbers of an uninterrupted run.
    """
    from mlplab.config import load_recipe, parse_set_options
    from mlplab.train.run import resume_experiment, run_experiment
    from mlplab.train.rundir import default_out

    if resume is not None:
        if recipe or sets or study:
            raise MlplabError("--resume takes the run's own configuration: drop --recipe/--set")
        res = resume_experiment(resume, data_dir=data, progress=not quiet)
        out = resume
    else:
        if not recipe:
            raise MlplabError("missing --recipe NAME_OR_PATH (or --resume DIR)")
        overrides = {}
        if study is not None:
            from mlplab.search import best_overrides

            overrides = best_overrides(study, storage)
            click.echo(
                f"best of study {study}: " + ", ".join(f"{k}={v}" for k, v in overrides.items())
            )
        overrides.update(parse_set_options(sets))
        cfg = load_recipe(recipe, overrides)
        out = out or default_out(cfg.name)
        res = run_experiment(cfg, out, data_dir=data, progress=not quiet, overwrite=overwrite)
    val = res["val_accuracy"]
    click.echo(
        f"{res['name']}: test accuracy {100 * res['test_accuracy']:.2f} %"
        + (f", validation {100 * val:.2f} %" if val is not None else "")
        + f", train {100 * res['train_accuracy']:.2f} % "
        f"({res['updates']} updates, {res['epochs']:.1f} epochs, {res['train_seconds']:.1f} s)"
    )
    click.echo(f"wrote {out}/results.json, curves.png, model.npz + model.json")


@click.command()
@click.argument("part", type=click.Choice(["assignment2", "assignment3", "bonus", "all"]))
@data_option
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("runs/reproduce"),
    show_default=True,
    help="Output directory (report: OUT/index.html, OUT/report.md).",
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Parallel worker processes of the hyper-parameter searches.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Same pipeline on a small subset with few updates (a smoke test, minutes).",
)
@force_option
@quiet_option
@_friendly
def reproduce(
    part: str, data: Path | None, out: Path, workers: int, quick: bool, force: bool, quiet: bool
) -> None:
    """Run every experiment of a part of the course and write a report.

    Experiments whose results already exist for the same configuration are reused, so an
    interrupted reproduction continues where it stopped.
    """
    from mlplab.reproduce import reproduce as run

    page = run(
        part,
        out,
        data_dir=data,
        workers=workers,
        quick=quick,
        force=force,
        progress=not quiet,
        echo=click.echo,
    )
    click.echo(f"wrote {page} and {page.parent / 'report.md'}")
