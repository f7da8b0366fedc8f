"""Signals and write errors during a run: one clear message, never a traceback.

SIGINT and SIGTERM are caught while a run holds its directory (:func:`catch_signals`, into a
:class:`Stop`): in the training loop they stop the run at its next update with a checkpoint;
in the other phases (data loading, whitening, the final evaluation and files) at once, with
:class:`RunInterrupted` (:meth:`Stop.phase`). A full disk while writing is one error that
says how to continue (:func:`writing`).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from mlplab.errors import MlplabError


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """A full disk or an I/O error while writing becomes one error line; the last good
    checkpoint is kept (writes are atomic)."""
    try:
        yield
    except OSError as e:
        raise MlplabError(
            f"cannot write {e.filename or out}: {e.strerror or e}; the last good checkpoint is "
            f"kept: free space and continue with: mlplab train --resume {shlex.quote(str(out))}"
        ) from None


class RunInterrupted(MlplabError):
    """SIGINT or SIGTERM during a run: in the training loop, a checkpoint of the current
    update was written; in any other phase (data loading, whitening, the final evaluation,
    the figures) the run stopped at once, its last checkpoint kept."""

    exit_code = 130


class Stop(list[int]):
    """The signals received under :func:`catch_signals` (truthy once one came). While ``message``
    is set (:meth:`phase`: data loading, whitening, the final evaluation and files), a signal
    raises :class:`RunInterrupted` at once from the handler (whitening's eigendecomposition
    runs in a helper thread, :func:`mlplab.machine.interruptible`, so the handler runs within
    a fraction of a second); while it is None (the start's writes, the training loop) it is
    only recorded, and the loop stops at its next update with a checkpoint."""

    message: str | None = None

    def phase(self, message: str | None) -> None:
        """Enter a phase that a signal stops at once (``message``) or that it does not (None);
        a signal received before stops the first kind now."""
        self.message = message
        if message is not None and self:
            raise RunInterrupted(message)

    def handle(self, signum: int, _frame: object) -> None:
        self.append(signum)
        if self.message is not None:
            raise RunInterrupted(self.message)


@contextlib.contextmanager
def catch_signals() -> Iterator[Stop]:
    """Catch SIGINT and SIGTERM while the block runs (main thread only), into the yielded
    :class:`Stop`."""
    got = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    old = {s: signal.signal(s, got.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def interrupted(what: str, resume: Path | None) -> str:
    """The message of an interrupt outside the training loop (``resume``: the run directory
    to resume, or None when nothing was written)."""
    then = "nothing was written; run the same command again"
    if resume is not None:
        then = f"continue with: mlplab train --resume {shlex.quote(str(resume))}"
    return f"interrupted {what}; {then}"
