"""Command-line interface: the ``mlplab`` group and its entry point.

Each command lives in a small module that parses its options, calls one library function
(the one ``mlplab reproduce`` calls too) and prints: :mod:`.cli_train` (``train``,
``reproduce``), :mod:`.cli_models` (``evaluate``, ``weights``, ``compare``, ``export``,
``predict``), :mod:`.cli_gradcheck`, :mod:`.cli_studies` (``sensitivity``, ``lr-range``,
``ablation``) and :mod:`.cli_search`. Shared options are in :mod:`.clitools`.
"""

from __future__ import annotations

import click

from mlplab import __version__
from mlplab.cli_gradcheck import gradcheck
from mlplab.cli_models import compare, evaluate, export, predict, weights
from mlplab.cli_search import search
from mlplab.cli_studies import ablation, lr_range, sensitivity
from mlplab.cli_train import reproduce, train
from mlplab.clitools import main_entry


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlplab")
def cli() -> None:
    """mlplab: fully-connected networks in NumPy, on CIFAR-10 or your own images and arrays.

    Train a recipe, check gradients, evaluate saved models. Run
    `mlplab COMMAND --help` for the options of a command.
    """


@cli.command("recipes")
@click.option(
    "--options",
    "show_options",
    is_flag=True,
    help="List the components (optimizers, schedules, augmentations, layers) and their options.",
)
def list_recipes(show_options: bool) -> None:
    """List the shipped recipes, or with --options what a recipe's components accept."""
    if show_options:
        from mlplab.train.build import component_options

        for owner, name, opt in component_options():
            if not name:
                click.echo(f"{owner:<26} (no options)")
                continue
            default = str(opt.default).lower() if opt.kind is bool else f"{opt.default:g}"
            click.echo(f"{owner:<26} {name:<12} default {default:<8} {opt.describe()}")
        return
    from mlplab.config import load_recipe, recipe_names

    for name in recipe_names():
        click.echo(f"{name:<28} {load_recipe(name).description}")


for _command in (
    train,
    evaluate,
    weights,
    compare,
    export,
    predict,
    gradcheck,
    sensitivity,
    lr_range,
    ablation,
    reproduce,
    search,
):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``mlplab`` command."""
    main_entry(cli)


if __name__ == "__main__":
    main()
