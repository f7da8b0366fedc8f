"""Command-line interface: parses, calls the library, prints."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

from mlplab import __version__
from mlplab.clitools import data_option, finite, friendly, main_entry, sets_option
from mlplab.errors import MlplabError

_friendly = friendly()


def _hidden(_ctx: Any, _param: Any, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers like 50,50, got {value!r}"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"hidden sizes must be positive integers, got {value!r}")
    return sizes


# Options shared by several commands (--data and --set also by `mlplab search`).
force_option = click.option(
    "--force", is_flag=True, help="Re-run experiments whose results already exist."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


def out_option(default: str) -> Callable[[Any], Any]:
    return click.option(
        "--out",
        "-o",
        type=click.Path(path_type=Path),
        default=Path(default),
        show_default=True,
        help="Output directory.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlplab")
def cli() -> None:
    """mlplab: fully-connected networks on CIFAR-10 in NumPy.

    Train a recipe, check gradients, evaluate saved models. Run
    `mlplab COMMAND --help` for the options of a command.
    """


@cli.command()
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
        out = out or Path("runs") / cfg.name.replace("/", "-")
        res = run_experiment(cfg, out, data_dir=data, progress=not quiet, overwrite=overwrite)
    val = res["val_accuracy"]
    click.echo(
        f"{res['name']}: test accuracy {100 * res['test_accuracy']:.2f} %"
        + (f", validation {100 * val:.2f} %" if val is not None else "")
        + f", train {100 * res['train_accuracy']:.2f} % "
        f"({res['updates']} updates, {res['epochs']:.1f} epochs, {res['train_seconds']:.1f} s)"
    )
    click.echo(f"wrote {out}/results.json, curves.png, model.npz + model.json")


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@data_option
@click.option(
    "--on",
    "part",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
    help="Which official part of the data to score.",
)
@click.option(
    "--vote",
    type=click.Choice(["mean", "majority"]),
    default="mean",
    show_default=True,
    help="How several models are combined.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--confusion",
    "figure",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the confusion-matrix figure (PNG) here.",
)
@click.option(
    "--misclassified",
    "gallery",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write a gallery of the first 30 misclassified images of the first model (PNG).",
)
@_friendly
def evaluate(
    models: tuple[Path, ...],
    data: Path | None,
    part: str,
    vote: str,
    as_json: bool,
    figure: Path | None,
    gallery: Path | None,
) -> None:
    """Accuracy of one saved model, or of an ensemble of several, on CIFAR-10: overall, per
    class and as a confusion matrix (rows true class, columns predicted)."""
    from mlplab.data import load_cifar10
    from mlplab.nn.serialize import load_network
    from mlplab.train.inspect import evaluate_models

    loaded = [load_network(m) for m in models]
    raw = load_cifar10(data, progress=not as_json)
    x, y = (raw.x_test, raw.y_test) if part == "test" else (raw.x_train, raw.y_train)
    res = {
        "part": part,
        **evaluate_models(loaded, x, y, raw.classes, vote, [str(m) for m in models]),
    }
    if figure is not None:
        from mlplab.report.plots import plot_confusion

        plot_confusion(res["confusion"], raw.classes, figure, f"{part} set, {len(y)} images")
    if gallery is not None:
        from mlplab.report.plots import plot_images
        from mlplab.train.inspect import misclassified

        images, labels = misclassified(loaded[0], x, y)
        title = f"{models[0]}: misclassified ({part} set)"
        plot_images(images, labels, gallery, title, cols=6, cell=1.7)
    if as_json:
        click.echo(json.dumps(res))
        return
    for m, a in zip(models, res["model_accuracies"], strict=True):
        click.echo(f"{m}: {100 * a:.2f} %")
    if len(models) > 1:
        click.echo(f"ensemble of {len(models)} ({vote}): {100 * res['accuracy']:.2f} %")
    width = max(len(c) for c in raw.classes)
    for c, a in zip(raw.classes, res["per_class_accuracy"], strict=True):
        click.echo(f"  {c:<{width}}  {100 * a:6.2f} %")
    click.echo(f"{part} accuracy: {100 * res['accuracy']:.2f} % on {len(y)} images")
    for f in (figure, gallery):
        if f is not None:
            click.echo(f"wrote {f}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="PNG to write.")
@_friendly
def weights(model: Path, out: Path) -> None:
    """The first layer's weights as 32x32 colour pictures, one per hidden unit (the course's
    class templates for a one-layer net)."""
    from mlplab.nn.serialize import load_network
    from mlplab.report.plots import plot_images
    from mlplab.train.inspect import first_layer_images

    images, labels = first_layer_images(load_network(model))
    plot_images(images, labels, out, f"{model}: first-layer weights (each scaled to its range)")
    click.echo(f"wrote {out} ({len(images)} units)")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="PNG to write.")
@click.option(
    "--metric",
    type=click.Choice(["val_accuracy", "train_accuracy", "val_loss", "val_cost", "lr"]),
    default="val_accuracy",
    show_default=True,
)
@_friendly
def compare(runs: tuple[Path, ...], out: Path, metric: str) -> None:
    """Several runs' curves on one axis: validation accuracy (--metric) and training loss.

    RUNS are run directories (or their results.json), e.g. 3 and 9 layers with and without
    batch norm."""
    from mlplab.report.plots import plot_runs

    histories = []
    for run in runs:
        path = run / "results.json" if run.is_dir() else run
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
            histories.append((res.get("name") or str(run), list(res["history"])))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise MlplabError(f"{path}: not the results.json of a run ({e})") from None
    plot_runs(histories, out, metric)
    click.echo(f"wrote {out}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "safetensors"]),
    required=True,
    help="onnx (onnxruntime; input raw pixels 0..255) or safetensors (torch.nn.Sequential).",
)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="File to write.")
@_friendly
def export(model: Path, fmt: str, out: Path) -> None:
    """Export a saved model (a run directory or its model.npz) with its standardisation, to
    ONNX or to the safetensors state_dict of the equivalent torch.nn.Sequential."""
    from mlplab.nn.export import export as run_export
    from mlplab.nn.serialize import load_network

    click.echo(f"wrote {run_export(load_network(model), fmt, out)}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--top", type=click.IntRange(1), default=3, show_default=True, help="Classes shown per image."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one entry per image.")
@_friendly
def predict(model: Path, images: tuple[Path, ...], top: int, as_json: bool) -> None:
    """Classify image files of any size with a saved model (MODEL: a run directory or its
    model.npz). Images that are not 32x32 are cropped to their central square and resized
    with Lanczos resampling; the model's saved standardisation is applied."""
    from mlplab.nn.serialize import load_network
    from mlplab.train.inspect import predict_files

    rows = predict_files(load_network(model), images, top)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        shown = ", ".join(f"{c} {100 * p:.1f} %" for c, p in r["top"])
        click.echo(f"{r['file']}: {shown}")


@cli.command()
@click.option(
    "--hidden",
    default="50",
    callback=_hidden,
    show_default=True,
    help="Hidden layer sizes, comma-separated.",
)
@click.option("--batch-norm", is_flag=True, help="Batch norm in every hidden layer.")
@click.option(
    "--drop-prob",
    type=float,
    default=0.0,
    callback=finite(0, 1),
    show_default=True,
    help="Dropout after hidden layers (mask frozen during the check).",
)
@click.option(
    "--lam", type=float, default=0.01, callback=finite(0), show_default=True, help="L2 weight λ."
)
@click.option(
    "--samples",
    "-n",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Number of samples in the batch.",
)
@click.option(
    "--dims",
    "-d",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Keep only the first D input dimensions (the course checks on 20).",
)
@click.option(
    "--init", type=click.Choice(["course", "he", "xavier"]), default="he", show_default=True
)
@click.option(
    "--h",
    "step",
    type=float,
    default=1e-5,
    callback=finite(0, 1, low_open=True),
    show_default=True,
    help="Finite-difference step.",
)
@click.option(
    "--method",
    type=click.Choice(["loop", "vectorized"]),
    default="vectorized",
    show_default=True,
    help="One perturbation at a time (reference) or many at once.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Use real CIFAR-10 samples from DIR (default: $MLPLAB_DATA if set, "
    "else standard-normal synthetic inputs).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--torch",
    "use_torch",
    is_flag=True,
    help="Compare with PyTorch autograd on the same weights and batch instead of centred "
    "differences (needs torch; no dropout).",
)
@_friendly
def gradcheck(
    hidden: list[int],
    batch_norm: bool,
    drop_prob: float,
    lam: float,
    samples: int,
    dims: int,
    init: str,
    step: float,
    method: str,
    data: Path | None,
    seed: int,
    as_json: bool,
    use_torch: bool,
) -> None:
    """Compare analytic gradients of every parameter with numerical ones (float64), or with
    PyTorch autograd (--torch)."""
    from mlplab.gradcheck import gradcheck as run_check
    from mlplab.nn.network import Network

    rng = np.random.default_rng(seed)
    data = data or (Path(os.environ["MLPLAB_DATA"]) if os.environ.get("MLPLAB_DATA") else None)
    if data is not None:
        from mlplab.data import load_cifar10

        raw = load_cifar10(data, progress=False)
        if dims > raw.x_train.shape[1]:
            raise MlplabError(f"--dims {dims} exceeds the data's {raw.x_train.shape[1]} dimensions")
        x = raw.x_train[:samples].astype(np.float64) / 255
        x = (x - x.mean(0)) / (x.std(0) + 1e-8) if samples > 1 else x - 0.5
        X, y, k = x[:, :dims], raw.y_train[:samples].astype(np.int64), len(raw.classes)
        source = f"{samples} CIFAR-10 samples from {data}"
    else:
        X = rng.standard_normal((samples, dims))
        k = 10
        y = rng.integers(0, k, samples)
        source = f"{samples} synthetic standard-normal samples"
    if batch_norm and samples < 2:
        raise MlplabError("batch norm needs --samples >= 2")
    net = Network.build(
        dims,
        hidden,
        k,
        rng=rng,
        init=init,
        batch_norm=batch_norm,
        drop_prob=drop_prob,
        dtype="float64",
    )
    if use_torch:
        from mlplab.gradcheck import gradcheck_torch

        report, method = gradcheck_torch(net, X, y, lam), "against PyTorch autograd"
    else:
        report = run_check(net, X, y, lam, h=step, method=method)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    arch = "-".join(str(s) for s in [dims, *hidden, k])
    click.echo(
        f"gradient check of {arch}{' with batch norm' if batch_norm else ''}, λ={lam}, "
        f"{source}, float64, {method if use_torch else f'h={step}, {method}'}"
    )
    click.echo(report.table())


@cli.command()
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
    from mlplab.data import load_cifar10
    from mlplab.fileio import prepare_out_dir
    from mlplab.train.sensitivity import run_sensitivity, sensitivity_table

    try:
        values = [float(s) for s in sigmas.split(",") if s.strip()]
    except ValueError:
        raise MlplabError(f"--sigmas expects comma-separated numbers, got {sigmas!r}") from None
    if not values or any(not v > 0 for v in values):
        raise MlplabError(f"--sigmas must be positive numbers, got {sigmas!r}")
    cfg = load_recipe(recipe, parse_set_options(sets))
    prepare_out_dir(out, overwrite=True)
    raw = load_cifar10(data, progress=not quiet)
    rows = run_sensitivity(cfg, out, raw, values, force=force, progress=not quiet)
    click.echo(sensitivity_table(rows))
    click.echo(f"wrote {out}/sensitivity.png, sensitivity.md, sensitivity.json")


@cli.command("lr-range")
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
    from mlplab.data import load_cifar10, make_splits
    from mlplab.fileio import prepare_out_dir
    from mlplab.train.lr_range import lr_range_test

    cfg = load_recipe(recipe, parse_set_options(sets))
    if not epochs > 0:
        raise MlplabError(f"--epochs must be positive, got {epochs}")
    prepare_out_dir(out, overwrite=True)
    raw = load_cifar10(data, progress=not quiet)
    rng = np.random.default_rng(cfg.seed)
    splits = make_splits(raw, cfg.split, rng, n_train=cfg.n_train or None, dtype=cfg.dtype)
    res = lr_range_test(
        cfg,
        splits,
        rng,
        out,
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


@cli.command()
@click.option("--recipe", "-r", default="bonus/best", show_default=True, help="Recipe to ablate.")
@click.option(
    "--only",
    default=None,
    metavar="A,B",
    help="Only these ingredients (batch-norm, dropout, flips, translations, noise, "
    "augmentation (all three), label-smoothing, l2).",
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
    from mlplab.data import load_cifar10
    from mlplab.fileio import prepare_out_dir
    from mlplab.train.ablation import ablation_table, run_ablation

    cfg = load_recipe(recipe, parse_set_options(sets))
    prepare_out_dir(out, overwrite=True)
    raw = load_cifar10(data, progress=not quiet)
    picked = [s.strip() for s in only.split(",")] if only else None
    rows = run_ablation(cfg, out, raw, only=picked, force=force, progress=not quiet)
    click.echo(ablation_table(rows))
    click.echo(f"wrote {out}/ablation.md and ablation.json")


@cli.command()
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


@cli.command("recipes")
def list_recipes() -> None:
    """List the shipped recipes."""
    from mlplab.config import load_recipe, recipe_names

    for name in recipe_names():
        click.echo(f"{name:<28} {load_recipe(name).description}")


from mlplab.cli_search import search as _search  # noqa: E402

cli.add_command(_search)


def main() -> None:
    """Entry point of the ``mlplab`` command."""
    main_entry(cli)


if __name__ == "__main__":
    main()
