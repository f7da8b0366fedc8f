"""A run directory: one owner at a time, and checkpoints that belong to its run.

* :func:`owned` holds an exclusive lock (:func:`file_lock`) on ``DIR/.lock`` for the life of
  a ``train`` or ``--resume``; a second process gets ``error: DIR is in use by process N``.
  The lock is the kernel's (``flock``): a killed owner releases it.
* :func:`run_identity` names a run by its configuration's content hash and its data's
  fingerprint; every checkpoint records it, and ``--resume`` refuses a checkpoint of another
  run (an old run left in ``--out``, or other data).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mlplab.data import RawDataset
from mlplab.errors import MlplabError


@contextlib.contextmanager
def file_lock(path: Path, busy: str | Callable[[], str], name: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` while the block runs; if another process holds it,
    fail at once with the message ``busy`` (or ``busy()``). ``name``: ``path`` in other errors."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise MlplabError(busy() if callable(busy) else busy) from None
    except OSError as e:
        raise MlplabError(f"cannot lock {name or path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def owned(out: Path) -> Iterator[None]:
    """Hold the lock of run directory ``out`` (which must exist) while the block runs."""
    owner = out / ".owner"

    def busy() -> str:
        pid = owner.read_text().strip() if owner.is_file() else ""
        who = f"process {pid}" if pid else "another process"
        return f"{out} is in use by {who}; wait for it to finish"

    with file_lock(out / ".lock", busy, f"run directory {out}"):
        try:
            try:
                owner.write_text(f"{os.getpid()}\n")
            except OSError as e:
                raise MlplabError(
                    f"cannot write into run directory {out}: {e.strerror or e}"
                ) from None
            yield
        finally:
            owner.unlink(missing_ok=True)


def data_fingerprint(raw: RawDataset) -> str:
    """CRC-32 of every pixel and label, with the sizes (0.1 s for CIFAR-10: a changed image
    is another data set)."""
    crc = 0
    for a in (raw.x_train, raw.y_train, raw.x_test, raw.y_test):
        arr = np.ascontiguousarray(a)
        crc = zlib.crc32(f"{arr.shape}{arr.dtype}".encode(), crc)
        crc = zlib.crc32(memoryview(arr).cast("B"), crc)
    return f"crc32:{crc:08x}:{len(raw.y_train)}:{len(raw.y_test)}"


def run_identity(config_hash: str, raw: RawDataset) -> dict[str, str]:
    """What a checkpoint must match to be resumed: configuration hash and data fingerprint."""
    return {"config_hash": config_hash, "data": data_fingerprint(raw)}


def clear_temporary(directory: Path) -> None:
    """Remove the temporary files of checkpoint writes that were killed (``.ckpt-*.tmp``); a
    new run's start sets the earlier checkpoints aside instead (:class:`PreviousRun`)."""
    if directory.is_dir():
        for p in directory.glob(".ckpt-*.tmp"):
            if p.is_file():
                p.unlink()


#: What a run writes, and whether each is a directory: checked before training starts.
LAYOUT = {
    "checkpoints": True,
    "run.json": False,
    "results.json": False,
    "curves.png": False,
    "model.npz": False,
    "model.json": False,
}


def check_layout(out: Path) -> None:
    """Refuse a run directory where a file the run will write is a directory, or the other
    way round (found only after training otherwise)."""
    for name, is_dir in LAYOUT.items():
        p = out / name
        if p.exists() and p.is_dir() != is_dir:
            kind = "file" if is_dir else "directory"
            raise MlplabError(
                f"{p} is a {kind}; the run writes a {'directory' if is_dir else 'file'} "
                "there: remove it or choose another --out"
            )


class PreviousRun:
    """What a new run replaces (``run.json`` and the checkpoints of an unfinished earlier
    run), kept aside in ``DIR/.previous`` until the new run's first checkpoint is written.

    A start that fails before then (a divergence, an interrupt, an error) puts it back, so
    ``--out`` is left as it was; once the new run has a checkpoint, it is deleted.
    """

    def __init__(self, out: Path) -> None:
        self.out, self.kept = out, out / ".previous"
        shutil.rmtree(self.kept, ignore_errors=True)  # left by a start that was killed
        self.kept.mkdir()
        for name in ("run.json", "checkpoints"):
            if (out / name).exists():
                os.replace(out / name, self.kept / name)
        (out / "checkpoints").mkdir()
        self.open = True

    def commit(self) -> None:
        """The new run has a checkpoint: the previous one is gone for good."""
        if self.open:
            shutil.rmtree(self.kept, ignore_errors=True)
            self.open = False

    def restore(self) -> None:
        """Undo the start: the directory as it was before it."""
        if not self.open:
            return
        for name in ("run.json", "checkpoints"):
            p = self.out / name
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            if (self.kept / name).exists():
                os.replace(self.kept / name, p)
        shutil.rmtree(self.kept, ignore_errors=True)
        self.open = False
