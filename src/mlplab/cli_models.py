"""Commands on saved models and runs: ``evaluate``, ``weights``, ``compare``, ``export``,
``predict``. Each parses, calls the library, prints."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlplab.clitools import check_outputs, data_option, friendly, quiet_option, writing
from mlplab.errors import MlplabError

_friendly = friendly()


def _json(obj: object) -> str:
    """Strict JSON: a number that is not finite is an error, never ``NaN`` in the output
    (which JSON parsers refuse)."""
    try:
        return json.dumps(obj, allow_nan=False)
    except ValueError:
        raise MlplabError("a result is not a finite number; no JSON printed") from None


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
@quiet_option
@_friendly
def evaluate(
    models: tuple[Path, ...],
    data: Path | None,
    part: str,
    vote: str,
    as_json: bool,
    figure: Path | None,
    gallery: Path | None,
    quiet: bool,
) -> None:
    """Accuracy of one saved model, or of an ensemble of several, on the data (CIFAR-10, an
    image folder read at the model's image size, or an .npz): overall, per class and as a
    confusion matrix (rows true class, columns predicted). The data must have the model's
    shape (height, width, channels) and scale."""
    from mlplab.train.inspect import evaluate_saved

    check_outputs({"--confusion": figure, "--misclassified": gallery}, list(models), data)
    with writing(f"{figure} or {gallery}"):
        res = evaluate_saved(
            models,
            data,
            part,
            vote,
            confusion=figure,
            gallery=gallery,
            progress=not (as_json or quiet),
        )
    if as_json:
        click.echo(_json(res))
        return
    for m, a in zip(models, res["model_accuracies"], strict=True):
        click.echo(f"{m}: {100 * a:.2f} %")
    if len(models) > 1:
        click.echo(f"ensemble of {len(models)} ({vote}): {100 * res['accuracy']:.2f} %")
    width = max(len(c) for c in res["classes"])
    for c, a in zip(res["classes"], res["per_class_accuracy"], strict=True):
        click.echo(
            f"  {c:<{width}}  " + ("   n/a (no samples)" if a is None else f"{100 * a:6.2f} %")
        )
    click.echo(f"{part} accuracy: {100 * res['accuracy']:.2f} % on {res['n']} images")
    for f in (figure, gallery):
        if f is not None:
            click.echo(f"wrote {f}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="PNG to write.")
@click.option(
    "--max-units",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Draw at most this many units (the first ones).",
)
@_friendly
def weights(model: Path, out: Path, max_units: int) -> None:
    """The first layer's weights as pictures of the model's image shape (grayscale or
    colour, any size), one per hidden unit: the course's class templates for a one-layer
    net. Models of flat features have no pictures."""
    from mlplab.nn.serialize import load_network
    from mlplab.train.inspect import draw_first_layer

    check_outputs({"--out": out}, [model])
    with writing(str(out)):
        shown, total = draw_first_layer(load_network(model), out, str(model), max_units)
    click.echo(f"wrote {out} ({shown if shown == total else f'{shown} of {total}'} units)")


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

    check_outputs({"--out": out}, list(runs))
    histories = run_histories(runs)
    with writing(str(out)):
        plot_runs(histories, out, metric)
    click.echo(f"wrote {out}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "safetensors"]),
    required=True,
    help="onnx (onnxruntime; input: the model's raw rows, e.g. pixels 0..255) or safetensors "
    "(torch.nn.Sequential).",
)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="File to write.")
@_friendly
def export(model: Path, fmt: str, out: Path) -> None:
    """Export a saved model (a run directory or its model.npz) of any input shape with its
    standardisation, to ONNX (input "pixels" of shape (N, d), the model's d) or to the
    safetensors state_dict of the equivalent torch.nn.Sequential."""
    from mlplab.nn.export import export as run_export
    from mlplab.nn.serialize import load_network

    check_outputs({"--out": out}, [model])
    click.echo(f"wrote {run_export(load_network(model), fmt, out)}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--top",
    type=click.IntRange(1),
    default=None,
    help="Classes shown per image (default: 3, or all of a model with fewer).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one entry per image.")
@_friendly
def predict(model: Path, images: tuple[Path, ...], top: int | None, as_json: bool) -> None:
    """Classify image files of any size and mode with a saved model of images (MODEL: a run
    directory or its model.npz). Each image is converted to the model's channels (grayscale
    or RGB; 16-bit images scaled to 8 bits); one of another size is cropped around its
    centre to the model's aspect ratio and resized with Lanczos resampling; the model's
    saved standardisation is applied."""
    from mlplab.nn.serialize import load_network
    from mlplab.train.inspect import predict_files

    rows = predict_files(load_network(model), images, top)
    if as_json:
        click.echo(_json(rows))
        return
    for r in rows:
        shown = ", ".join(f"{c} {100 * p:.1f} %" for c, p in r["top"])
        click.echo(f"{r['file']}: {shown}")
