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
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from mlplab import faults
from mlplab.data import RawDataset, data_fingerprint
from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_json, file_lock, read_json, read_regular
from mlplab.train.checkpoint import latest_checkpoint


@contextlib.contextmanager
def owned(out: Path) -> Iterator[None]:
    """Hold the lock of run directory ``out`` (which must exist) while the block runs; its
    ``.owner`` names the process. A ``.owner`` that is a link or a special file is an error
    (never written through, never removed)."""
    owner = out / ".owner"

    def busy() -> str:
        try:
            pid = read_regular(owner, max_bytes=64).decode("ascii", "replace").strip()
        except MlplabError:
            pid = ""
        who = f"process {pid}" if pid.isdigit() else "another process"
        return f"{out} is in use by {who}; wait for it to finish"

    with file_lock(out / ".lock", busy, f"run directory {out}"):
        if os.path.lexists(owner) and not stat.S_ISREG(os.lstat(owner).st_mode):
            raise MlplabError(
                f"{owner} is a link, a directory or a special file, not the regular file "
                "where mlplab writes its process id: remove it"
            )
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(owner, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as e:
            raise MlplabError(f"cannot write into run directory {out}: {e.strerror or e}") from None
        try:
            yield
        finally:
            owner.unlink(missing_ok=True)


def default_out(name: str) -> Path:
    """``runs/<name>``, the name made one safe path component: ``/``, ``\\`` and control
    characters (a newline) become ``-``, leading and trailing dots and spaces go (``..``
    is no way up), at most 200 bytes; ``runs/run`` if nothing is left."""
    safe = re.sub(r"[/\\\x00-\x1f\x7f]", "-", name).strip(" .")
    safe = os.fsdecode(os.fsencode(safe)[:200]).strip(" .")
    return Path("runs") / (safe or "run")


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


#: The start journal's format, and the names a new run sets aside (an earlier run's files).
START = "mlplab-start"
_ASIDE = re.compile(
    r"run\.json|checkpoints|results\.json|curves\.png|model(-snapshot-\d+)?\.(npz|json)"
)
_SCRATCH = re.compile(r"\.previous\.[0-9a-f]{12}\.(tmp|old)")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


class PreviousRun:
    """What a new run replaces (an earlier run's ``run.json``, checkpoints and, with
    ``--overwrite``, its results and model files), kept aside in ``DIR/.previous`` until the
    new run's first checkpoint is written; then it is deleted (:meth:`commit`).

    Crash-safe: ``.previous`` appears (a rename) holding ``start.json``, the journal naming
    what is set aside, before anything moves. While it exists the new run owns nothing yet:
    a start that fails puts everything back (:meth:`restore`), and after a start killed
    at any step (kill -9 included), the next ``train`` or ``--resume`` in ``DIR`` does the
    same (:func:`recover_start`), so the earlier run continues.
    """

    def __init__(self, out: Path) -> None:
        self.out, self.kept = out, out / ".previous"
        names = ["run.json", "checkpoints", "results.json", "curves.png", "model.npz"]
        names += sorted(p.name for p in out.glob("model*.*") if _ASIDE.fullmatch(p.name))
        names = [n for n in dict.fromkeys(names) if os.path.lexists(out / n)]
        self.open = bool(names)
        if names:
            tmp = out / f".previous.{secrets.token_hex(6)}.tmp"
            tmp.mkdir(0o777)
            try:
                journal = {"format": START, "set_aside": names, "pid": os.getpid()}
                atomic_write_json(tmp / "start.json", journal)
                os.rename(tmp, self.kept)  # the directory and its journal appear together
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            faults.maybe_die("start-journal", 0)
        try:
            for i, name in enumerate(names, 1):
                os.replace(out / name, self.kept / name)
                faults.maybe_die("start-moved", i)
            (out / "checkpoints").mkdir(exist_ok=True)
        except BaseException:
            self.restore()
            raise

    def commit(self) -> None:
        """The new run has a checkpoint: the previous one is gone for good."""
        if self.open:
            self.open = False
            _discard(self.kept)

    def restore(self) -> None:
        """Undo the start: the directory as it was before it."""
        if self.open:
            self.open = False
            _put_back(self.out, self.kept, _journal(self.kept))


def _discard(kept: Path) -> None:
    gone = kept.with_name(f".previous.{secrets.token_hex(6)}.old")
    os.rename(kept, gone)  # one step: the start is committed
    faults.maybe_die("start-commit", 0)
    shutil.rmtree(gone, ignore_errors=True)


def _journal(kept: Path) -> list[str] | None:
    """The names set aside in ``kept`` (``None``: no journal, an older mlplab's start)."""
    what = "start journal"
    names: list[str] | None = None
    if os.path.lexists(kept / "start.json"):
        j = read_json(kept / "start.json", what=what, max_bytes=1 << 20, base=kept)
        found = j.get("set_aside") if isinstance(j, dict) and j.get("format") == START else 0
        if not isinstance(found, list) or not all(
            isinstance(n, str) and _ASIDE.fullmatch(n) for n in found
        ):
            raise MlplabError(f"{what} {kept / 'start.json'} is damaged; look inside {kept}")
        names = list(found)
    allowed = {"start.json", *(names if names is not None else ("run.json", "checkpoints"))}
    if strangers := sorted(p.name for p in kept.iterdir() if p.name not in allowed):
        raise MlplabError(
            f"{kept} holds files mlplab did not put there ({', '.join(strangers[:3])}); "
            "move it away"
        )
    return names


def _put_back(out: Path, kept: Path, names: list[str] | None) -> int:
    """Restore what ``kept`` holds; remove what the start made (not in the journal); return
    how many entries of ``out`` changed."""
    changed = 0
    for name in ("run.json", "checkpoints") if names is not None else ():
        if name not in (names or ()) and os.path.lexists(out / name):
            _remove(out / name)
            changed += 1
    for i, name in enumerate(names if names is not None else ("run.json", "checkpoints"), 1):
        if os.path.lexists(kept / name):  # else not moved yet: out/name is still the old one
            _remove(out / name)
            os.replace(kept / name, out / name)
            changed += 1
            faults.maybe_die("restore", i)
    shutil.rmtree(kept)
    return changed


def recover_start(out: Path) -> str | None:
    """Finish what a killed start left in ``out`` (call holding its lock): a start whose
    first checkpoint is complete is committed; one without is undone, the run it replaced
    put back (returns a note saying so). A ``.previous`` that mlplab did not make is an error.
    """
    for p in out.glob(".previous.*"):
        if _SCRATCH.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)  # a journal never published, or committed
    kept = out / ".previous"
    if not os.path.lexists(kept):
        return None
    if kept.is_symlink() or not kept.is_dir():
        raise MlplabError(
            f"{kept} is in the way: mlplab keeps there the run that a new start replaces, "
            "and this is not a directory it made; move it away"
        )
    names = _journal(kept)
    ckpts = out / "checkpoints"
    moved = names is not None and ("checkpoints" not in names or (kept / "checkpoints").exists())
    try:
        started = moved and latest_checkpoint(ckpts) is not None
    except MlplabError:
        started = False
    if started:  # killed between its first checkpoint and the commit: the new run stays
        _discard(kept)
        return None
    if not _put_back(out, kept, names):
        return None  # nothing had moved yet
    return f"a start in {out} was stopped before its first checkpoint: the run it replaced is back"
