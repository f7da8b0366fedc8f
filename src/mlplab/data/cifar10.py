"""Finding and loading a data set (CIFAR-10 by default), with the decoded-array cache.

:func:`load_data` reads ``data``: a directory, or a path ending in ``.npz``; ``None`` means
``$MLPLAB_DATA``, else the official CIFAR-10 download. A directory may hold (or be):

* ``cifar-10-batches-py``: the official Python pickles ``data_batch_1`` ..
  ``data_batch_5``, ``test_batch`` and ``batches.meta``;
* ``cifar-10-batches-bin``: the official binary files ``data_batch_1.bin`` ..
  ``data_batch_5.bin``, ``test_batch.bin`` and ``batches.meta.txt``;
* an image folder ``train/<class>/*`` and ``test/<class>/*`` (or ``train/`` alone, the
  test part then held out) of any one size, grayscale or colour (:mod:`.folder`).

An ``.npz`` file holds arrays ``x``, ``y`` and optionally ``x_test``, ``y_test``,
``classes`` (:mod:`.arrays`).

Whatever the format, a :class:`~mlplab.data.batches.RawDataset` holds rows in plane order
(:mod:`mlplab.images`) with their ``image_shape`` (``None`` for flat features): uint8
pixels, or float64 features from an ``.npz``. CIFAR-10 gives rows of 3072 values (1024 R,
1024 G, 1024 B, each plane row-major 32x32). ``size = (height, width)`` resizes every
image on reading (``LANCZOS``). Decoded batches and folders are cached
(:mod:`mlplab.data.cache`), keyed by the files' names, sizes and times and by ``size``;
an ``.npz`` is read directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.data import cache as _cache
from mlplab.data import folder as _folder
from mlplab.data.arrays import check_regular, read_npz
from mlplab.data.batches import (
    BIN_DIR,
    CIFAR10_CLASSES,
    PY_DIR,
    RawDataset,
    official_files,
    read_binary_batches,
    read_python_batches,
)
from mlplab.data.folder import FOLDER_FORMAT, read_image_folder
from mlplab.data.pixels import resize_rows
from mlplab.errors import ConfigError, DataError, MlplabError
from mlplab.fileio import atomic_write_bytes
from mlplab.images import CIFAR10_SHAPE, ImageShape, shape_or_none

#: Where the official Python version of CIFAR-10 is downloaded from.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Its MD5 as published on https://www.cs.toronto.edu/~kriz/cifar.html
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
#: An image folder with ``train/`` only (its test part held out): another cache key.
HELD_OUT_FORMAT = "image-folder-held-out"
_MARKER = ".mlplab-verified-md5"

__all__ = [
    "ARCHIVE_NAME",
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "RawDataset",
    "default_cache_dir",
    "download_cifar10",
    "load_cifar10",
    "load_data",
    "locate_data",
    "read_binary_batches",
    "read_image_folder",
    "read_python_batches",
]


# --------------------------------------------------------------------- locating


def default_cache_dir() -> Path:
    """``$MLPLAB_CACHE`` if set, else the per-user cache ``pooch.os_cache("mlplab")``."""
    env = os.environ.get("MLPLAB_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("mlplab"))


def locate_data(
    data_dir: str | os.PathLike | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Return the directory (or ``.npz`` file) holding the data.

    ``data_dir`` if given, else ``$MLPLAB_DATA`` if set, else the official
    Python version of CIFAR-10 downloaded (once) into ``cache_dir`` (default
    :func:`default_cache_dir`).  Raises :class:`DataError` if the path does not
    exist, is neither a directory nor an ``.npz`` (a path ending in ``.npz`` must be a
    regular file), or the download fails.
    """
    origin = ""
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get("MLPLAB_DATA")
        if not env:
            return download_cifar10(cache_dir, progress=progress)
        data_dir, origin = env, " (from MLPLAB_DATA)"
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"data directory {path} does not exist{origin}")
    if _is_npz(path):
        check_regular(path)
    elif not path.is_dir():
        raise DataError(f"data path {path} is not a directory or an .npz file{origin}")
    return path.resolve()


def _is_npz(path: Path) -> bool:
    return path.name.lower().endswith(".npz")


def _extract(archive: Path, dest_parent: Path) -> Path:
    """Safely extract ``archive`` and move its ``cifar-10-batches-py`` into ``dest_parent``."""
    tmp = Path(tempfile.mkdtemp(dir=dest_parent, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp, filter="data")
            else:  # Python < 3.11.4: refuse anything but plain relative members
                for m in tf.getmembers():
                    if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in m.name:
                        raise DataError(f"{archive}: unsafe archive member {m.name!r}")
                tf.extractall(tmp)  # members checked above
        src = tmp / PY_DIR
        if not src.is_dir():
            raise DataError(f"{archive} does not contain a {PY_DIR}/ directory")
        dest = dest_parent / PY_DIR
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(src, dest)
        return dest
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot extract {archive}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_cifar10(cache_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Download, verify (MD5) and extract the official Python CIFAR-10; return its directory.

    The archive and ``cifar-10-batches-py/`` go to ``cache_dir`` (default
    :func:`default_cache_dir`).  A previous verified extraction is reused
    without network access.  Raises :class:`DataError` on network failure or
    checksum mismatch.
    """
    import pooch

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / PY_DIR
    marker = dest / _MARKER
    with contextlib.suppress(OSError, DataError):
        if marker.read_text().strip() == CIFAR10_MD5:
            official_files(dest, "")  # all batches still there?
            return dest
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the download directory {cache}: {exc}") from None
    hint = "pass --data DIR (or set MLPLAB_DATA) to use a local copy of CIFAR-10"
    try:
        archive = pooch.retrieve(
            CIFAR10_URL,
            known_hash=f"md5:{CIFAR10_MD5}",
            fname=ARCHIVE_NAME,
            path=cache,
            progressbar=progress,
        )
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise DataError(f"cannot download {CIFAR10_URL}: {exc}; {hint}") from None
        raise DataError(
            f"the file downloaded from {CIFAR10_URL} does not have the expected MD5 "
            f"{CIFAR10_MD5} (corrupt or tampered download, not kept); {hint}"
        ) from None
    except Exception as exc:  # network errors come from requests, urllib3, ...
        raise DataError(
            f"cannot download CIFAR-10 from {CIFAR10_URL} ({type(exc).__name__}: {exc}); {hint}"
        ) from None
    dest = _extract(Path(archive), cache)
    try:
        atomic_write_bytes(marker, (CIFAR10_MD5 + "\n").encode())
    except OSError:
        pass  # only costs a re-verification next time
    return dest


# ----------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class _Layout:
    fmt: str
    path: Path
    stats: list[tuple[str, int, int]]
    read: Callable[[bool, tuple[int, int] | None], RawDataset]  # (progress, size)


def _file_stats(directory: Path, names: list[str]) -> list[tuple[str, int, int]]:
    out = []
    for name in names:
        p = directory / name
        if p.is_file():
            st = p.stat()
            out.append((name, st.st_size, st.st_mtime_ns))
    return out


def _official_layout(fmt: str, directory: Path) -> _Layout:
    suffix, meta = (".bin", "batches.meta.txt") if fmt == BIN_DIR else ("", "batches.meta")
    names = [p.name for p in official_files(directory, suffix)] + [meta]
    reader = read_binary_batches if fmt == BIN_DIR else read_python_batches
    return _Layout(
        fmt, directory, _file_stats(directory, names), lambda _p, size: reader(directory)
    )


def _detect_layout(root: Path) -> _Layout:
    """Find the data layout in ``root`` (or ``root`` being a batches directory)."""
    if (root / BIN_DIR).is_dir():
        return _official_layout(BIN_DIR, root / BIN_DIR)
    if (root / PY_DIR).is_dir():
        return _official_layout(PY_DIR, root / PY_DIR)
    if (root / "data_batch_1.bin").exists() or (root / "test_batch.bin").exists():
        return _official_layout(BIN_DIR, root)
    if (root / "data_batch_1").exists() or (root / "test_batch").exists():
        return _official_layout(PY_DIR, root)
    if (root / "train").is_dir() or (root / "test").is_dir():
        index = _folder.scan_image_folder(root)
        return _Layout(
            HELD_OUT_FORMAT if index.held_out else FOLDER_FORMAT,
            root,
            index.stats,
            lambda progress, size: read_image_folder(
                root, size=size, progress=progress, index=index
            ),
        )
    try:
        entries = sorted(p.name for p in root.iterdir())
    except OSError:
        entries = []
    archives = [n for n in entries if n.endswith((".tar.gz", ".tgz", ".tar"))]
    hint = f"; found {', '.join(archives)}: extract it first" if archives else ""
    listing = "it is empty" if not entries else f"it contains {', '.join(entries[:8])}"
    if len(entries) > 8:
        listing += ", ..."
    raise DataError(
        f"no data found in {root} ({listing}{hint}); looked for {PY_DIR}/ "
        f"(data_batch_1..5, test_batch, batches.meta), {BIN_DIR}/ (data_batch_1..5.bin, "
        "test_batch.bin, batches.meta.txt), those files directly in the directory, or an "
        "image folder train/<class>/* (and test/<class>/*); or pass an .npz file"
    )


def _from_cache(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> RawDataset | None:
    """Rebuild a RawDataset from a cache entry; ``None`` if the entry is inconsistent.

    An entry without ``image_shape`` was written when only CIFAR-10's shape was read.
    """
    try:
        shape = shape_or_none(meta.get("image_shape", CIFAR10_SHAPE.to_list()))
        classes = tuple(str(c) for c in meta["classes"])
        x_train, x_test = np.asarray(arrays["x_train"]), np.asarray(arrays["x_test"])
        y_train = np.array(arrays["y_train"], dtype=np.int64)
        y_test = np.array(arrays["y_test"], dtype=np.int64)
        tb = arrays.get("train_batch")
        train_batch = None if tb is None else np.array(tb, dtype=np.int8)
        d = x_train.shape[1] if shape is None else shape.size
        ok = (
            x_train.dtype == np.uint8
            and x_test.dtype == np.uint8
            and x_train.shape == (len(y_train), d)
            and x_test.shape == (len(y_test), d)
            and (train_batch is None or train_batch.shape == y_train.shape)
            and 0 <= min(y_train.min(), y_test.min())
            and max(y_train.max(), y_test.max()) < len(classes)
        )
        if not ok:
            return None
        return RawDataset(
            x_train, y_train, x_test, y_test, classes, train_batch, str(meta["source"]), shape
        )
    except (KeyError, ValueError, TypeError, IndexError, MlplabError):
        return None


def _check_size(size: Any) -> tuple[int, int] | None:
    """``None`` (or an empty sequence) for no resizing, else ``(height, width)`` checked."""
    if size is None or (isinstance(size, list | tuple) and not size):
        return None
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ConfigError(f"size must be (height, width), got {size!r}")
    shape = ImageShape(size[0], size[1], 1)  # each side checked
    return int(shape.height), int(shape.width)


def _resized(raw: RawDataset, size: tuple[int, int]) -> RawDataset:
    """The official batches (or any uint8 image set) resized to ``size``."""
    shape = raw.image_shape
    if shape is None or (shape.height, shape.width) == size:
        return raw
    x_train, new = resize_rows(raw.x_train, shape, size)
    x_test, _ = resize_rows(raw.x_test, shape, size)
    return replace(raw, x_train=x_train, x_test=x_test, image_shape=new)


def _cached(cache: Path, fmt: str, layout: _Layout) -> RawDataset | None:
    """The cache entry of ``layout`` read as ``fmt``, if there is a sound one."""
    hit = _cache.load_entry(cache, _cache.cache_key(fmt, layout.path, layout.stats))
    return None if hit is None else _from_cache(*hit)


def load_data(
    data: str | os.PathLike | None = None,
    *,
    size: tuple[int, int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> RawDataset:
    """Load the data set at ``data`` (or ``$MLPLAB_DATA``, or the CIFAR-10 download).

    ``data``: a directory of any layout of the module docstring (detected automatically),
    or an ``.npz`` file (:mod:`mlplab.data.arrays`). ``size = (height, width)`` resizes
    every image on reading (``None`` or ``()``: images keep their size, which must be one
    size). Decoded arrays are cached under ``cache_dir`` (default
    :func:`default_cache_dir`, which is also where a download goes); an unwritable cache
    only warns.

    Returns a :class:`RawDataset`: x_train (N, d) and x_test (M, d), uint8 pixels (or
    float64 features from an ``.npz``), y_train (N,) and y_test (M,) int64, and the
    ``image_shape`` of the rows.  Arrays served from the cache are read-only memory maps.
    Raises :class:`DataError` (and :class:`ConfigError` for a bad ``size``).
    """
    size = _check_size(size)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = locate_data(data, cache_dir=cache, progress=progress)
    if _is_npz(root):
        return read_npz(root, size=size)
    layout = _detect_layout(root)
    if size == (32, 32) and layout.fmt in (PY_DIR, BIN_DIR):
        size = None  # the official batches' own size: the same arrays, the same cache entry
    if size is not None:  # images already of that size: the entry read without ``size``
        raw = _cached(cache, layout.fmt, layout)
        if raw is not None and raw.image_shape is not None:
            if (raw.image_shape.height, raw.image_shape.width) == size:
                return raw
    fmt = layout.fmt if size is None else f"{layout.fmt}@{size[0]}x{size[1]}"
    raw = _cached(cache, fmt, layout)
    if raw is not None:
        return raw
    raw = layout.read(progress, size)
    if size is not None:
        raw = _resized(raw, size)  # the folders resized on reading already
    arrays = {
        "x_train": raw.x_train,
        "y_train": raw.y_train,
        "x_test": raw.x_test,
        "y_test": raw.y_test,
    }
    if raw.train_batch is not None:
        arrays["train_batch"] = raw.train_batch
    meta = {
        "format": fmt,
        "source": raw.source,
        "classes": list(raw.classes),
        "image_shape": None if raw.image_shape is None else raw.image_shape.to_list(),
    }
    _cache.save_entry(cache, _cache.cache_key(fmt, layout.path, layout.stats), arrays, meta)
    return raw


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    size: tuple[int, int] | None = None,
) -> RawDataset:
    """:func:`load_data` under its former name (CIFAR-10 by default; any format)."""
    return load_data(data_dir, size=size, cache_dir=cache_dir, progress=progress)
