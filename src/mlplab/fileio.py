"""Atomic file writes, untrusted reads and file locks (files are ``.npz`` + ``.json``, never
pickle; the model file format is :mod:`mlplab.nn.serialize`'s).

A write goes to a temporary file in the destination's directory, is flushed to
disk, and then renamed over the destination, so a reader (or a run killed
mid-write) sees either the old file or the new one, never half of one.

The temporary file is created with mode ``0o666`` and the kernel applies the
umask, exactly as for ``open(path, "w")``: run directories and caches that a
group shares stay readable by it (``tempfile.mkstemp`` would force ``0600``).
A whole directory is published the same way by :func:`atomic_directory`
(mode ``0o777 & ~umask``, as ``mkdir``; ``tempfile.mkdtemp`` would force ``0700``).

Every file read is untrusted, mlplab's own included: :func:`read_json` is the one JSON
reader (regular files only, a size and a depth limit, no ``NaN``/``Infinity``, strict UTF-8;
one error naming the file), :func:`read_regular` its byte-level half, and
:func:`check_npz_members` refuses an ``.npz`` that would inflate far beyond its size.
:func:`file_lock` holds an exclusive lock (``filelock``) and fails at once when another
process holds it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from mlplab.errors import MlplabError

#: The untrusted-JSON reader's limits (:func:`read_json`): bytes of a file, nesting levels.
JSON_MAX_BYTES = 64 << 20
JSON_MAX_DEPTH = 64
#: A compressed ``.npz`` member may inflate to this many bytes, or this ratio, before it is
#: refused unread (mlplab writes uncompressed members; a 3 MB file must not inflate to 3 GB).
NPZ_INFLATE_BYTES, NPZ_INFLATE_RATIO = 64 << 20, 50


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
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # (numpy's stub: named arrays)
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------ untrusted files


class _NonFinite(ValueError):
    """A JSON number mlplab refuses: ``NaN``, ``Infinity`` or one that overflows a float."""


def _no_constant(name: str) -> Any:
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def _refusal(
    error: type[MlplabError], reason: str, path: object, what: str, text: str
) -> MlplabError:
    """``error("<what> <path> <text>")`` with ``reason`` (a word: ``"syntax"``, ``"depth"``,
    ...) as its attribute, so that a caller can tell a torn file from a hostile one."""
    e = error(f"{what} {path} {text}" if what else f"{path} {text}")
    e.reason = reason  # type: ignore[attr-defined]
    return e


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``), from its ``st_mode``."""
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def read_regular(
    path: str | os.PathLike,
    *,
    what: str = "",
    max_bytes: int | None = JSON_MAX_BYTES,
    base: str | os.PathLike | None = None,
    error: type[MlplabError] = MlplabError,
) -> bytes:
    """The bytes of ``path``, which must be a regular file (never a FIFO, a device or a
    directory: checked by ``os.stat`` before opening, and opened non-blocking), of at most
    ``max_bytes`` (checked before reading, and at most ``max_bytes + 1`` bytes are read, so
    a file that grows or lies about its size cannot exhaust memory), and, with ``base``,
    inside that directory once every link is followed. Anything else: one ``error`` naming
    the file (``what``: what it is, for the message)."""

    def refuse(reason: str, text: str) -> MlplabError:
        return _refusal(error, reason, path, what, text)

    if base is not None:
        real, root = os.path.realpath(path), os.path.realpath(base)
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            raise refuse("outside", f"leads out of {base} (to {real}); refused")
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise refuse("special", f"is not a regular file ({file_kind(st.st_mode)})")
        if max_bytes is not None and st.st_size > max_bytes:
            raise refuse("size", f"is {st.st_size:,} bytes, over the limit of {max_bytes:,}")
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(path, flags | getattr(os, "O_BINARY", 0)), "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):  # replaced between the stat and the open
                raise refuse("special", f"is not a regular file ({file_kind(mode)})")
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except FileNotFoundError:
        raise refuse("missing", "does not exist") from None
    except OSError as e:
        raise refuse("unreadable", f"cannot be read: {e.strerror or e}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise refuse("size", f"holds over {max_bytes:,} bytes, the limit")
    return data


def parse_json(
    data: bytes,
    *,
    source: object = "",
    what: str = "",
    max_depth: int = JSON_MAX_DEPTH,
    error: type[MlplabError] = MlplabError,
    allow_nan: bool = False,
) -> Any:
    """``data`` parsed as strict JSON: UTF-8, no ``NaN``/``Infinity`` (nor numbers that
    overflow to them; ``allow_nan`` lets them through, for a file whose digest proves
    mlplab wrote it), at most ``max_depth`` levels of nesting, strings that are Unicode
    text (no lone surrogates). Anything else: one ``error`` naming ``source``."""

    def refuse(reason: str, text: str) -> MlplabError:
        return _refusal(error, reason, source, what, text)

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise refuse("encoding", f"is not UTF-8 text (byte {e.start})") from None
    try:
        if allow_nan:
            obj = json.loads(text)
        else:
            obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:  # the C parser's own guard, far beyond max_depth
        raise refuse("depth", f"nests deeper than {max_depth} levels") from None
    except _NonFinite as e:
        raise refuse("number", f"holds a non-finite number ({e})") from None
    except json.JSONDecodeError as e:
        raise refuse("syntax", f"is not valid JSON: {e}") from None
    except ValueError:  # an integer of over 4300 digits
        raise refuse("number", "holds a number too long to read") from None
    stack = [(obj, 1)]
    while stack:  # iterative: a deep document cannot exhaust the Python stack here
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise refuse("depth", f"nests deeper than {max_depth} levels")
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend((v, depth + 1) for v in items)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise refuse("encoding", "holds a string that is not Unicode text") from None
    return obj


def read_json(
    path: str | os.PathLike,
    *,
    what: str = "",
    max_bytes: int = JSON_MAX_BYTES,
    max_depth: int = JSON_MAX_DEPTH,
    base: str | os.PathLike | None = None,
    error: type[MlplabError] = MlplabError,
    allow_nan: bool = False,
) -> Any:
    """The one reader of JSON files mlplab did not just write (every file read is
    untrusted, its own included): :func:`read_regular` then :func:`parse_json`. Every
    refusal is one ``error`` (:class:`~mlplab.errors.MlplabError` by default) naming the
    file, with a ``reason`` attribute: ``missing``, ``unreadable``, ``outside``, ``special``,
    ``size``, ``encoding``, ``syntax``, ``number`` or ``depth``. The caller checks the
    schema (types, ranges) of what it gets; ``allow_nan`` lets ``NaN`` through (results
    files hold it for an undefined value)."""
    data = read_regular(path, what=what, max_bytes=max_bytes, base=base, error=error)
    return parse_json(
        data, source=path, what=what, max_depth=max_depth, error=error, allow_nan=allow_nan
    )


def check_npz_members(
    file: str | os.PathLike | IO[bytes],
    error: type[MlplabError] = MlplabError,
    name: object = None,
) -> None:
    """Refuse an ``.npz`` (a path or an open file, called ``name`` in errors) whose
    compressed members would inflate past :data:`NPZ_INFLATE_BYTES` and
    :data:`NPZ_INFLATE_RATIO` times their stored size, by their declared sizes, before
    anything is inflated."""
    path = name if name is not None else file
    try:
        with zipfile.ZipFile(file) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise error(f"{path} is not a readable .npz array file: {e}") from None
    for i in infos:
        big = i.file_size > max(NPZ_INFLATE_BYTES, NPZ_INFLATE_RATIO * i.compress_size)
        if i.compress_type != zipfile.ZIP_STORED and big:
            raise error(
                f"{path}: member {i.filename!r} would inflate from {i.compress_size:,} to "
                f"{i.file_size:,} bytes; refused unread"
            )


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
