"""A data set in one ``.npz`` file (``np.savez`` / ``np.savez_compressed``), read as untrusted.

Members (any other member is refused, so that a misspelt name is not silently ignored):

* ``x``: ``(N, d)`` flat features, or images in HWC order, ``(N, H, W)`` (grayscale) or
  ``(N, H, W, C)`` with ``C`` 1 or 3; images become rows in plane order
  (:mod:`mlplab.images`). uint8 values are pixels (scale 255); any other integer, bool or
  float dtype becomes float64 features (scale 1), which must be finite. Images keep their
  :class:`~mlplab.images.ImageShape` whatever the dtype.
* ``y``: ``(N,)`` integer labels ``0..K-1``, or strings (the classes are then the sorted
  distinct strings of ``y`` and ``y_test``).
* ``x_test``, ``y_test``: optional, both or neither, shaped and typed as ``x`` and ``y``.
  Without them the test part is held out of ``x``: a fixed, seeded 20 % of every class
  (:mod:`mlplab.data.holdout`).
* ``classes``: optional ``(K,)`` distinct strings, the label order: integer labels must
  lie in ``0..K-1``, string labels must be among them.

Safety: only a regular file is opened (a FIFO, device or directory is refused before
anything is read, and the file is opened non-blocking); every member's uncompressed size
is read from the zip directory and checked before anything is inflated (at most
:data:`MAX_TOTAL_BYTES` in all, a compressed member at most :data:`MAX_RATIO` times the
file's size, a stored one exactly its stored size); each ``.npy`` header is parsed without
pickle (object, structured and complex arrays are refused) and its shape must match the
member's size before the array is read; shapes, lengths and labels are checked.

``size`` (resizing): uint8 images are resized image by image as image folders are
(Pillow, ``LANCZOS``); float images and flat features cannot be resized (an error), and a
``size`` equal to the images' own size changes nothing. An ``.npz`` is not cached: its
arrays are read directly.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlplab.data.batches import RawDataset
from mlplab.data.holdout import HOLDOUT_NOTE, split_held_out
from mlplab.data.pixels import resize_rows
from mlplab.errors import ConfigError, DataError
from mlplab.fileio import file_kind
from mlplab.images import ImageShape

#: Members an ``.npz`` data set may hold (each stored as ``<name>.npy``).
MEMBERS = ("x", "y", "x_test", "y_test", "classes")
#: Uncompressed bytes of all members together, at most.
MAX_TOTAL_BYTES = 4 * 2**30
#: A compressed member may inflate to at most this many times the file's size.
MAX_RATIO = 64

__all__ = ["MAX_RATIO", "MAX_TOTAL_BYTES", "MEMBERS", "check_regular", "read_npz"]


def check_regular(path: Path) -> os.stat_result:
    """``os.stat`` of ``path``, or a :class:`DataError` when it is not a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path} is {file_kind(st.st_mode)}, not an .npz file")
    return st


def _open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, opened without blocking and checked regular."""
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # replaced between the two looks
        os.close(fd)
        raise DataError(f"{path} is {file_kind(mode)}, not an .npz file")
    return fd


def _check_directory(infos: list[zipfile.ZipInfo], file_size: int, path: Path) -> None:
    """Names, methods and declared sizes of the members, before anything is inflated."""
    seen, total = set(), 0
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or name not in MEMBERS or name in seen:
            what = "a second" if name in seen else "an unknown member"
            raise DataError(
                f"{path}: {what} {info.filename!r}; an .npz data set holds only "
                f"{', '.join(MEMBERS)} (each once)"
            )
        seen.add(name)
        if info.flag_bits & 0x1:
            raise DataError(f"{path}: member {name} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise DataError(f"{path}: stored member {name} declares an inconsistent size")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > MAX_RATIO * file_size:
                raise DataError(
                    f"{path}: member {name} declares {info.file_size} bytes uncompressed, more "
                    f"than {MAX_RATIO} times the file's {file_size} bytes (refused unread)"
                )
        else:
            raise DataError(
                f"{path}: member {name} uses compression method {info.compress_type}; "
                "only stored and deflated members (np.savez, np.savez_compressed) are read"
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise DataError(
            f"{path}: its members declare {total} bytes uncompressed, more than the "
            f"{MAX_TOTAL_BYTES} ({MAX_TOTAL_BYTES // 2**30} GiB) mlplab reads (refused unread)"
        )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    name = info.filename.removesuffix(".npy")
    fmt = np.lib.format
    with zf.open(info) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as exc:
            raise DataError(f"{path}: member {name} is not a plain .npy array ({exc})") from None
        if dtype.hasobject:
            raise DataError(
                f"{path}: member {name} holds Python objects (a pickle); mlplab reads only "
                "numeric and string arrays and never unpickles a data file"
            )
        if dtype.kind not in "biufUS" or dtype.fields is not None or dtype.subdtype is not None:
            raise DataError(f"{path}: member {name} has an unsupported dtype {dtype}")
        nbytes = math.prod(shape) * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise DataError(
                f"{path}: member {name} declares shape {shape} of {dtype} ({nbytes} bytes) "
                f"but holds {info.file_size - f.tell()} bytes of data"
            )
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise DataError(f"{path}: member {name} is truncated")
    if not nbytes:
        return np.zeros(shape, dtype=dtype)
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _read_members(path: Path) -> dict[str, np.ndarray]:
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        try:
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
                _check_directory(infos, file_size, path)
                return {i.filename.removesuffix(".npy"): _read_member(zf, i, path) for i in infos}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npz file ({exc})") from None


# --------------------------------------------------------------------- checks


def _rows(a: np.ndarray, name: str, path: Path) -> tuple[np.ndarray, ImageShape | None]:
    """``a`` as ``(n, d)`` rows (uint8 kept, else float64) and its image shape."""
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: {name} must hold numbers, found dtype {a.dtype}")
    shape = None
    try:
        if a.ndim == 3:
            shape = ImageShape(a.shape[1], a.shape[2], 1)
        elif a.ndim == 4:
            shape = ImageShape(a.shape[1], a.shape[2], a.shape[3])
        elif a.ndim != 2:
            raise ConfigError("expected (N, d), (N, H, W) or (N, H, W, C)")
    except ConfigError as exc:
        raise DataError(
            f"{path}: {name} has shape {a.shape}: {exc} (flat features are (N, d), images "
            "(N, H, W) or (N, H, W, C) with C 1 or 3)"
        ) from None
    if a.shape[0] < 1 or (a.ndim == 2 and a.shape[1] < 1):
        raise DataError(f"{path}: {name} is empty (shape {a.shape})")
    x = a if a.dtype == np.uint8 else a.astype(np.float64)
    if x.dtype == np.float64:
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                f"{path}: {name} holds NaN or infinite values (first in sample "
                f"{int(np.flatnonzero(bad)[0])}); features must be finite"
            )
    rows = shape.from_hwc(x) if shape is not None else np.ascontiguousarray(x)
    return rows, shape


def _strings(a: np.ndarray, name: str, path: Path) -> np.ndarray:
    if a.dtype.kind == "S":
        try:
            return np.char.decode(a, "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: {name} holds bytes that are not UTF-8") from None
    return a


#: More classes than this is a label column that is not class numbers (an id, a timestamp).
MAX_CLASSES = 100_000


def _labels(arrays: dict[str, np.ndarray], path: Path) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """The int64 labels of ``y`` (and ``y_test``) and the class names."""
    names = [n for n in ("y", "y_test") if n in arrays]
    ys = [arrays[n] for n in names]
    kinds = {"int" if y.dtype.kind in "iu" else "str" if y.dtype.kind in "US" else "?" for y in ys}
    if kinds - {"int", "str"} or len(kinds) > 1:
        found = ", ".join(f"{n} {y.dtype}" for n, y in zip(names, ys, strict=True))
        raise DataError(f"{path}: labels must be all integers or all strings, found {found}")
    given = None
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind not in "US" or not len(c):
            raise DataError(f"{path}: classes must be a non-empty 1-D array of strings")
        given = tuple(str(s) for s in _strings(c, "classes", path))
        if len(set(given)) != len(given):
            raise DataError(f"{path}: classes holds the same name twice")
    if kinds == {"int"}:
        lo, hi = min(int(y.min()) for y in ys), max(int(y.max()) for y in ys)  # Python ints
        if given is None and hi >= MAX_CLASSES:
            raise DataError(
                f"{path}: label {hi}: integer labels are class numbers 0..K-1 with K at most "
                f"{MAX_CLASSES}; give string labels or renumber them"
            )
        out = [y.astype(np.int64) for y in ys]
        k = len(given) if given is not None else hi + 1
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise DataError(
                f"{path}: label {bad} out of range 0..{k - 1}"
                + (f" (classes has {k} names)" if given is not None else "")
            )
        return out, given if given is not None else tuple(str(i) for i in range(k))
    strs = [_strings(y, n, path) for n, y in zip(names, ys, strict=True)]
    classes = given or tuple(sorted({str(s) for y in strs for s in np.unique(y)}))
    code = {c: i for i, c in enumerate(classes)}
    out = []
    for n, y in zip(names, strs, strict=True):
        uniq, inv = np.unique(y, return_inverse=True)
        missing = [str(u) for u in uniq if str(u) not in code]
        if missing:
            raise DataError(f"{path}: {n} holds label {missing[0]!r}, not among the classes")
        out.append(np.array([code[str(u)] for u in uniq], dtype=np.int64)[inv.ravel()])
    return out, classes


def read_npz(path: str | os.PathLike, *, size: tuple[int, int] | None = None) -> RawDataset:
    """The data set in the ``.npz`` file ``path`` (rules in the module docstring).

    Returns a :class:`RawDataset` of uint8 pixels or float64 features, ``train_batch``
    ``None``. Raises one :class:`DataError` naming the file and the member at fault.
    """
    path = Path(path)
    arrays = _read_members(path)
    missing = [n for n in ("x", "y") if n not in arrays]
    if missing or (("x_test" in arrays) != ("y_test" in arrays)):
        raise DataError(
            f"{path}: an .npz data set needs x and y (and x_test with y_test, or neither); "
            f"found {', '.join(sorted(arrays)) or 'no members'}"
        )
    for n in ("y", "y_test"):
        if n in arrays and arrays[n].ndim != 1:
            raise DataError(f"{path}: {n} must be one label per sample, found {arrays[n].shape}")
        if n in arrays and not arrays[n].size:
            raise DataError(f"{path}: {n} holds no samples (leave x_test and y_test out instead)")
    x, shape = _rows(arrays["x"], "x", path)
    labels, classes = _labels(arrays, path)
    if len(labels[0]) != len(x):
        raise DataError(f"{path}: x holds {len(x)} samples but y {len(labels[0])} labels")
    source = f"npz {path}"
    if "x_test" in arrays:
        x_test, test_shape = _rows(arrays["x_test"], "x_test", path)
        if test_shape != shape or x_test.shape[1] != x.shape[1] or x_test.dtype != x.dtype:
            raise DataError(
                f"{path}: x_test {arrays['x_test'].shape} {arrays['x_test'].dtype} does not "
                f"match x {arrays['x'].shape} {arrays['x'].dtype} (shape, and uint8 pixels "
                "or features)"
            )
        y_train, y_test = labels
        if len(y_test) != len(x_test):
            raise DataError(f"{path}: x_test holds {len(x_test)} samples but y_test {len(y_test)}")
        x_train = x
    else:
        tr, te = split_held_out(labels[0], len(classes), f"{path} (no x_test/y_test)")
        x_train, x_test, y_train, y_test = x[tr], x[te], labels[0][tr], labels[0][te]
        source += f" ({HOLDOUT_NOTE})"
    if size is not None and (shape is None or (shape.height, shape.width) != tuple(size)):
        if shape is None or x.dtype != np.uint8:
            what = "flat features" if shape is None else "float images"
            raise DataError(
                f"{path}: {what} cannot be resized to size {list(size)}; resize them before "
                "saving the .npz, or leave size out"
            )
        x_train, new = resize_rows(x_train, shape, size)
        x_test, shape = resize_rows(x_test, shape, size)[0], new
    return RawDataset(x_train, y_train, x_test, y_test, classes, None, source, shape)
