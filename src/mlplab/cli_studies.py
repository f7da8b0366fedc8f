"""Studies of a recipe: ``sensitivity``, ``lr-range``, ``ablation``. Each parses, calls the
library (the functions ``mlplab reproduce`` calls too), prints."""

from __future__ import annotations

from pathlib import Path

import click

from mlplab.clitools import (
    data_option,
    finite,
    force_option,
    friendly,
    out_option,
    quiet_option,
    sets_option,
)
from mlplab.errors import MlplabError

_friendly = friendly()


@click.command()
@click.option(
    "--recipe",
    "-r",
    default="assignment3/sensitivity",
    show_default=True,
    help="Base recipe; its init and batch_norm are set per run.",
)
@click.option(
    "--sigmas",
    default="1e-1,1e-3,1e-4",
    show_default=True,
    help="Comma-separated standard deviations of the weights.",
)
@data_option
@out_option("runs/sensitivity")
@sets_option
@force_option
@quiet_option
@_friendly
def sensitivity(
    recipe: str,
    sigmas: str,
    data: Path | None,
    out: Path,
    sets: tuple[str, ...],
    force: bool,
    quiet: bool,
) -> None:
    """Sensitivity to initialisation: N(0, σ²) weights, with and without batch norm."""
    from mlplab.config import load_recipe, parse_set_options
    from mlplab.data import load_data
    from mlplab.fileio import prepare_out_dir
    from mlplab.train.reuse import Cache
    from mlplab.train.sensitivity import run_sensitivity, sensitivity_table

    try:
        values = [float(s) for s in sigmas.split(",") if s.strip()]
    except ValueError:
        raise MlplabError(f"--sigmas expects comma-separated numbers, got {sigmas!r}") from None
    if not values or any(not v > 0 for v in values):
        raise MlplabError(f"--sigmas must be positive numbers, got {sigmas!r}")
    cfg = load_recipe(recipe, parse_set_options(sets))
    prepare_out_dir(out, overwrite=True)
    raw = load_data(data, size=cfg.image_size(), progress=not quiet)
    rows = run_sensitivity(cfg, out, raw, values, cache=Cache(force=force), progress=not quiet)
    click.echo(sensitivity_table(rows))
    click.echo(f"wrote {out}/sensitivity.png, sensitivity.md, sensitivity.json")


@click.command("lr-range")
@click.option(
    "--recipe",
    "-r",
    default="assignment2/ex3",
    show_default=True,
    help="Recipe whose network, data split and batch size are used.",
)
@click.option(
    "--min",
    "lr_min",
    type=float,
    default=1e-5,
    callback=finite(0, low_open=True),
    show_default=True,
    help="Learning rate at the start.",
)
@click.option(
    "--max",
    "lr_max",
    type=float,
    default=0.5,
    callback=finite(0, low_open=True),
    show_default=True,
    help="Learning rate at the end.",
)
@click.option(
    "--epochs",
    type=float,
    default=8.0,
    callback=finite(0, low_open=True),
    show_default=True,
    help="Length of the test.",
)
@click.option(
    "--mode",
    type=click.Choice(["linear", "exp"]),
    default="linear",
    show_default=True,
    help="Linear or geometric growth of the rate.",
)
@click.option(
    "--points",
    type=click.IntRange(5),
    default=40,
    show_default=True,
    help="Number of recorded points.",
)
@data_option
@out_option("runs/lr-range")
@sets_option
@quiet_option
@_friendly
def lr_range(
    recipe: str,
    lr_min: float,
    lr_max: float,
    epochs: float,
    mode: str,
    points: int,
    data: Path | None,
    out: Path,
    sets: tuple[str, ...],
    quiet: bool,
) -> None:
    """Learning-rate range test: suggests eta_min and eta_max for a cyclical schedule."""
    from mlplab.config import load_recipe, parse_set_options
    from mlplab.data import load_data
    from mlplab.fileio import prepare_out_dir
    from mlplab.train.lr_range import run_lr_range
    from mlplab.train.reuse import Cache

    cfg = load_recipe(recipe, parse_set_options(sets))
    if not epochs > 0:
        raise MlplabError(f"--epochs must be positive, got {epochs}")
    prepare_out_dir(out, overwrite=True)
    raw = load_data(data, size=cfg.image_size(), progress=not quiet)
    res = run_lr_range(
        cfg,
        out,
        raw,
        cache=Cache(force=True),  # the command always runs the test (and records it)
        lr_min=lr_min,
        lr_max=lr_max,
        epochs=epochs,
        mode=mode,
        points=points,
        progress=not quiet,
    )
    click.echo(
        f"suggested eta_min = {res['suggested_eta_min']:.3g}, "
        f"eta_max = {res['suggested_eta_max']:.3g} ({res['updates']} updates, "
        f"{res['seconds']:.1f} s)"
    )
    if res["diverged_at_lr"] is not None:
        click.echo(
            f"training diverged at learning rate {res['diverged_at_lr']:.3g}; the test ended there"
        )
    click.echo(f"wrote {out}/lr_range.png and lr_range.json")


@click.command()
@click.option("--recipe", "-r", default="bonus/best", show_default=True, help="Recipe to ablate.")
@click.option(
    "--only",
    default=None,
    metavar="A,B",
    help="Only these ingredients (batch-norm, dropout, flips, translations, noise, "
    "augmentation (all three), whitening, label-smoothing, l2); the snapshot ensemble and "
    "flip averaging are always scored (they need no training).",
)
@data_option
@out_option("runs/ablation")
@sets_option
@force_option
@quiet_option
@_friendly
def ablation(
    recipe: str,
    only: str | None,
    data: Path | None,
    out: Path,
    sets: tuple[str, ...],
    force: bool,
    quiet: bool,
) -> None:
    """Train a recipe with each of its ingredients removed in turn; print the table."""
    from mlplab.config import load_recipe, parse_set_options
    from mlplab.data import load_data
    from mlplab.fileio import prepare_out_dir
    from mlplab.train.ablation import ablation_table, run_ablation
    from mlplab.train.reuse import Cache

    cfg = load_recipe(recipe, parse_set_options(sets))
    prepare_out_dir(out, overwrite=True)
    raw = load_data(data, size=cfg.image_size(), progress=not quiet)
    picked = [s.strip() for s in only.split(",")] if only else None
    rows = run_ablation(cfg, out, raw, only=picked, cache=Cache(force=force), progress=not quiet)
    click.echo(ablation_table(rows))
    click.echo(f"wrote {out}/ablation.md and ablation.json")
