"""Helpers shared by the command-line modules."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

import click

from mlplab.errors import MlplabError

DATA_HELP = (
    "Data set: a directory (CIFAR-10's cifar-10-batches-py or cifar-10-batches-bin, or "
    "image folders train/<class>/* + test/<class>/* of any one size, grey or colour; "
    "with train/ alone a seeded 20 % of each class is the test set) or an .npz file "
    "(x, y, optional x_test, y_test, classes). --set size=H,W resizes every image. "
    "Default: $MLPLAB_DATA, else download CIFAR-10."
)
data_option = click.option("--data", type=click.Path(path_type=Path), default=None, help=DATA_HELP)
sets_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a recipe field."
)
force_option = click.option(
    "--force", is_flag=True, help="Re-run experiments whose results already exist."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


def out_option(default: str) -> Callable[[Any], Any]:
    """``--out/-o DIR``, defaulting to ``default``."""
    return click.option(
        "--out",
        "-o",
        type=click.Path(path_type=Path),
        default=Path(default),
        show_default=True,
        help="Output directory.",
    )


def friendly(
    interrupted: str = "interrupted",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: an :class:`MlplabError` becomes one ``error: ...`` line on stderr and exit
    status 2; Ctrl-C prints ``interrupted`` and exits 130. Other exceptions are bugs and keep
    their traceback."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except MlplabError as e:
                code = getattr(e, "exit_code", 2)  # 130: an interruption, not an error
                text = str(e).replace("\n", "\\n")  # one line, whatever a file name holds
                click.echo(f"error: {text}" if code == 2 else text, err=True)
                sys.exit(code)
            except KeyboardInterrupt:
                click.echo(interrupted, err=True)
                sys.exit(130)

        return wrapper

    return decorate


def finite(
    low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> Callable[[click.Context, click.Parameter, float], float]:
    """A click callback: the value must be a finite number in ``[low, high)`` (``(low, high)``
    with ``low_open``); NaN and infinities are refused (``click.FloatRange`` lets NaN through)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
        bad = not math.isfinite(value) or (
            low is not None and (value < low or (low_open and value == low))
        )
        if bad or (high is not None and value >= high):
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"< {high:g}"
            raise click.BadParameter(
                f"{value!r} is not a finite number {' and '.join(x for x in (lo, hi) if x)}"
            )
        return value

    return check


#: Files of a run directory that a command reads or that the run itself wrote.
RUN_FILES = ("results.json", "run.json", "experiment.json", "curves.png")


def _protected(inputs: list[Path]) -> set[Path]:
    """The files that the given models or run directories consist of (a model file: its
    pair and the run files beside it)."""
    from mlplab.nn.serialize import model_paths

    out: set[Path] = set()
    for p in inputs:
        d = p if p.is_dir() else p.parent
        out |= {(d / n).resolve() for n in RUN_FILES}
        out |= {f.resolve() for pattern in ("model*.npz", "model*.json") for f in d.glob(pattern)}
        out |= {f.resolve() for f in (d / "checkpoints").glob("*")}
        if not p.is_dir():
            out |= {q.resolve() for q in model_paths(p)} | {p.resolve()}
    return out


def check_outputs(
    outputs: dict[str, Path | None], inputs: list[Path], data: Path | None = None
) -> None:
    """Before any work: every output path (option name -> path) must lie in an existing
    directory, be a regular file if it exists (never a directory, FIFO or device), be none
    of the files of the ``inputs`` (models, run directories), lie outside the ``data`` read
    and differ from the others."""
    seen: dict[Path, str] = {}
    protected = _protected(inputs)
    data_root = data.resolve() if data is not None else None
    for option, path in outputs.items():
        if path is None:
            continue
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise MlplabError(f"{option} {path}: the directory {parent} does not exist")
        if path.exists() or path.is_symlink():
            if path.is_dir():
                raise MlplabError(f"{option} {path} is a directory; give a file name")
            if not path.is_file():
                raise MlplabError(f"{option} {path} exists and is not a regular file")
        real = path.resolve()
        if data_root is not None and (real == data_root or data_root in real.parents):
            raise MlplabError(f"{option} {path} lies in the data {data}: not written there")
        if real in protected:
            raise MlplabError(f"{option} {path} is a file of the input {inputs[0]}: not replaced")
        if real in seen:
            raise MlplabError(f"{option} and {seen[real]} name the same file {path}")
        seen[real] = option


@contextlib.contextmanager
def writing(what: str) -> Iterator[None]:
    """A failed write (full disk, read-only file system) becomes one error line."""
    try:
        yield
    except OSError as e:
        raise MlplabError(f"cannot write {e.filename or what}: {e.strerror or e}") from None


def main_entry(group: click.Group) -> None:
    """Run ``group`` with click's usage errors as one ``error:`` line (exit status 2)."""
    try:
        group.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:  # `mlplab` alone: the help
        click.echo(e.ctx.get_help() if e.ctx is not None else e.format_message())
    except click.UsageError as e:
        where = f"{e.ctx.command_path} --help" if e.ctx is not None else "--help"
        click.echo(f"error: {e.format_message()} (see {where})", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
