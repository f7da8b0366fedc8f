"""Helpers shared by the command-line modules."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from mlplab.errors import MlplabError


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
                click.echo(f"error: {e}", err=True)
                sys.exit(2)
            except KeyboardInterrupt:
                click.echo(interrupted, err=True)
                sys.exit(130)

        return wrapper

    return decorate
