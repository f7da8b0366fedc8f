"""``mlplab gradcheck``: parses, calls :mod:`mlplab.gradcheck.netcheck`, prints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import numpy as np

from mlplab.clitools import finite, friendly

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


@click.command()
@click.option(
    "--hidden",
    default="50",
    callback=_hidden,
    show_default=True,
    help="Hidden layer sizes, comma-separated.",
)
@click.option("--batch-norm", is_flag=True, help="Batch norm in every hidden layer.")
@click.option(
    "--activation",
    default="relu",
    show_default=True,
    help="Activation between the layers (relu, gelu, leaky_relu, tanh, or any registered).",
)
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
    help="Use real samples from DIR or FILE.npz, any data set `train --data` reads "
    "(default: $MLPLAB_DATA if set, else standard-normal synthetic inputs).",
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
    activation: str,
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
    from mlplab.gradcheck.netcheck import check_batch, check_network

    rng = np.random.default_rng(seed)
    data = data or (Path(os.environ["MLPLAB_DATA"]) if os.environ.get("MLPLAB_DATA") else None)
    raw = None
    if data is not None:
        from mlplab.data import load_data

        raw = load_data(data, progress=False)
    X, y, k = check_batch(raw, samples, dims, rng)
    if raw is not None:
        source = f"{samples} samples from {data}"
    else:
        source = f"{samples} synthetic standard-normal samples"
    report = check_network(
        X,
        y,
        k,
        hidden,
        rng,
        lam=lam,
        init=init,
        batch_norm=batch_norm,
        drop_prob=drop_prob,
        activation=activation,
        h=step,
        method=method,
        use_torch=use_torch,
    )
    if use_torch:
        method = "against PyTorch autograd"
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    arch = "-".join(str(s) for s in [dims, *hidden, k])
    click.echo(
        f"gradient check of {arch}{' with batch norm' if batch_norm else ''}"
        f"{f', {activation}' if activation != 'relu' else ''}, λ={lam}, "
        f"{source}, float64, {method if use_torch else f'h={step}, {method}'}"
    )
    click.echo(report.table())
