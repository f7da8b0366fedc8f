"""Commands on saved models and runs: ``evaluate``, ``weights``, ``compare``, ``export``,
``predict``. Each parses, calls the library, prints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlplab.clitools import data_option, friendly

_friendly = friendly()


@click.command()
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
    from mlplab.train.inspect import evaluate_saved

    res = evaluate_saved(
        models, data, part, vote, confusion=figure, gallery=gallery, progress=not as_json
    )
    if as_json:
        click.echo(json.dumps(res))
        return
    for m, a in zip(models, res["model_accuracies"], strict=True):
        click.echo(f"{m}: {100 * a:.2f} %")
    if len(models) > 1:
        click.echo(f"ensemble of {len(models)} ({vote}): {100 * res['accuracy']:.2f} %")
    width = max(len(c) for c in res["classes"])
    for c, a in zip(res["classes"], res["per_class_accuracy"], strict=True):
        click.echo(f"  {c:<{width}}  {100 * a:6.2f} %")
    click.echo(f"{part} accuracy: {100 * res['accuracy']:.2f} % on {res['n']} images")
    for f in (figure, gallery):
        if f is not None:
            click.echo(f"wrote {f}")


@click.command()
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


@click.command()
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
    from mlplab.train.inspect import run_histories

    histories = run_histories(runs)
    plot_runs(histories, out, metric)
    click.echo(f"wrote {out}")


@click.command()
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


@click.command()
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
