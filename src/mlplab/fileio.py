"""Atomic file writes and the model file format (``.npz`` + ``.json``, never pickle).

A write goes to a temporary file in the destination's directory, is flushed to
disk, and then renamed over the destination, so a reader (or a run killed
mid-write) sees either the old file or the new one, never half of one.

The temporary file is created with mode ``0o666`` and the kernel applies the
umask, exactly as for ``open(path, "w")``: run directories and caches that a
group shares stay readable by it (``tempfile.mkstemp`` would force ``0600``).
A whole directory is published the same way by :func:`atomic_directory`
(mode ``0o777 & ~umask``, as ``mkdir``; ``tempfile.mkdtemp`` would force ``0700``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from mlplab.errors import MlplabError, ModelFileError

MODEL_FORMAT = "mlplab-model"
#: Version 2 files hold an input transform older readers would ignore (a ZCA matrix or flip
#: averaging); version 3 files an input geometry they would misread (images other than 32x32
#: RGB, flat features, or features not scaled by 255). A model needing neither is written as
#: version 1, which every reader understands.
MODEL_VERSION = 3


T = TypeVar("T")


def _create_temp(directory: Path, name: str, create: Callable[[Path], T]) -> tuple[T, Path]:
    """Call ``create`` on a new ``.<name>.<random>.tmp`` in ``directory``; return (result, path).

    ``create`` must fail with :class:`FileExistsError` when the path exists
    (``O_EXCL``, ``mkdir``), which makes the name ours alone and refuses a
    planted symlink; another random name is then tried.
    """
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return create(tmp), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name for {name} in {directory}")


def _open_new_file(path: Path) -> int:
    """Create ``path`` for writing, failing if it exists; its mode is ``0o666 & ~umask``.

    The mode is reduced by the umask in the kernel, so no process-wide
    ``os.umask`` round trip (racy under threads) is needed to honour it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags | getattr(os, "O_BINARY", 0), 0o666)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> int:
    """Write ``path`` atomically through ``write(fileobj)``; return the file's size in bytes.

    ``write`` gets a binary file open on a temporary file next to ``path`` (same
    file system, so the final :func:`os.replace` is atomic).  The data is
    fsynced before the rename; on any error, or an interrupt, the temporary file
    is removed and ``path`` is left as it was.  The new file's mode is
    ``0o666 & ~umask``.
    """
    path = Path(path)
    fd, tmp = _create_temp(path.parent, path.name, _open_new_file)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``path``; rename it to ``path`` at the end.

    The block fills the yielded directory. When it ends without error, an existing
    ``path`` is removed and the new directory takes its name, so ``path`` is either
    complete or absent, never half written; on any error, or an interrupt, the
    temporary directory is removed. The new directory's mode is ``0o777 & ~umask``.
    """
    path = Path(path)
    _, tmp = _create_temp(path.parent, path.name, lambda p: p.mkdir(0o777))
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def atomic_save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays to an uncompressed ``.npz`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def prepare_out_dir(
    out: str | os.PathLike, *, overwrite: bool = False, markers: tuple[str, ...] = ("results.json",)
) -> Path:
    """Create ``out`` (and parents) and check that it is a writable directory.

    Refuses a path that is a file, and (unless ``overwrite``) a directory that
    already holds a finished run (any of ``markers``), so nothing is overwritten.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MlplabError(f"--out {out} exists and is not a directory")
    if not overwrite:
        taken = [m for m in markers if (out / m).exists()]
        if taken:
            raise MlplabError(
                f"--out {out} already holds a finished run ({taken[0]}); "
                "choose another directory or pass --overwrite"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as e:
        raise MlplabError(f"cannot write to output directory {out}: {e.strerror or e}") from None
    return out


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(json, npz)`` paths of a model given as ``X.json``, ``X.npz``, ``X`` or a run directory."""
    p = Path(path)
    if p.is_dir():
        p = p / "model"
    stem = p.with_suffix("") if p.suffix in (".json", ".npz") else p
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def save_model(
    path: str | os.PathLike,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    *,
    version: int = MODEL_VERSION,
) -> None:
    """Save a model as ``path.npz`` (arrays) and ``path.json`` (architecture, classes, ...),
    marked with format ``version`` (the oldest that holds what the model needs)."""
    jpath, npath = model_paths(path)
    atomic_save_npz(npath, arrays)
    atomic_write_json(jpath, {"format": MODEL_FORMAT, "format_version": version, **meta})


def load_model_files(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read the JSON metadata and the arrays of a saved model, checking the format.

    Arrays are read with ``allow_pickle=False``: loading never executes code.
    """
    jpath, npath = model_paths(path)
    for p in (jpath, npath):
        if not p.is_file():
            raise ModelFileError(f"model file not found: {p}")
    try:
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{jpath} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{jpath} is not an mlplab model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{jpath}: invalid format_version {version!r}")
    if version > MODEL_VERSION:
        raise ModelFileError(
            f"{jpath} has format version {version}, newer than this mlplab supports "
            f"({MODEL_VERSION}); upgrade mlplab"
        )
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled object), OSError, ...
        raise ModelFileError(f"{npath} is not a readable .npz array file: {e}") from None
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):  # numpy hands back a non-.npy member as raw bytes
            raise ModelFileError(f"{npath}: member {k!r} is not a NumPy array")
    return meta, arrays
