"""Finding, downloading and loading CIFAR-10 (with the decoded-array cache).

Three on-disk layouts are recognised (in a directory, or in the directory
itself being the batches directory):

* ``cifar-10-batches-py``: the official Python pickles ``data_batch_1`` ..
  ``data_batch_5``, ``test_batch`` and ``batches.meta``;
* ``cifar-10-batches-bin``: the official binary files ``data_batch_1.bin`` ..
  ``data_batch_5.bin``, ``test_batch.bin`` and ``batches.meta.txt``;
* an image folder ``train/<class>/*`` and ``test/<class>/*`` (see
  :mod:`mlplab.data.folder`).

Whatever the layout, a :class:`~mlplab.data.batches.RawDataset` holds uint8 rows
of 3072 values in the official order (1024 R values, then 1024 G, then 1024 B,
each plane row-major 32x32). The official batch files are read by
:mod:`mlplab.data.batches`; decoded arrays are cached (:mod:`mlplab.data.cache`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.data import cache as _cache
from mlplab.data import folder as _folder
from mlplab.data.batches import (
    BIN_DIR,
    CIFAR10_CLASSES,
    N_PIXELS,
    PY_DIR,
    RawDataset,
    official_files,
    read_binary_batches,
    read_python_batches,
)
from mlplab.errors import DataError
from mlplab.fileio import atomic_write_bytes

#: Where the official Python version of CIFAR-10 is downloaded from.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Its MD5 as published on https://www.cs.toronto.edu/~kriz/cifar.html
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_FORMAT = "image-folder"
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
    """Return the directory holding CIFAR-10.

    ``data_dir`` if given, else ``$MLPLAB_DATA`` if set, else the official
    Python version downloaded (once) into ``cache_dir`` (default
    :func:`default_cache_dir`).  Raises :class:`DataError` if the directory
    does not exist or the download fails.
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
    if not path.is_dir():
        raise DataError(f"data path {path} is not a directory{origin}")
    return path.resolve()


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


# ------------------------------------------------------------------ folders


def read_image_folder(
    directory: str | os.PathLike,
    *,
    progress: bool = True,
    index: _folder.FolderIndex | None = None,
) -> RawDataset:
    """Decode an image folder ``directory/{train,test}/<class>/*`` (see :mod:`.folder`).

    Returns a :class:`RawDataset` with x_train (N, 3072), x_test (M, 3072)
    uint8 in official plane order and ``train_batch=None``.
    """
    index = index if index is not None else _folder.scan_image_folder(directory)
    x_train = _folder.decode_files(index.train_files, progress=progress, desc="decoding train")
    x_test = _folder.decode_files(index.test_files, progress=progress, desc="decoding test")
    return RawDataset(
        x_train=x_train,
        y_train=index.y_train,
        x_test=x_test,
        y_test=index.y_test,
        classes=index.classes,
        train_batch=None,
        source=f"{FOLDER_FORMAT} {index.root}",
    )


# ----------------------------------------------------------------- dispatch


@dataclass(frozen=True)
class _Layout:
    fmt: str
    path: Path
    stats: list[tuple[str, int, int]]
    read: Callable[[bool], RawDataset]


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
    return _Layout(fmt, directory, _file_stats(directory, names), lambda _p: reader(directory))


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
            FOLDER_FORMAT,
            root,
            index.stats,
            lambda progress: read_image_folder(root, progress=progress, index=index),
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
        f"no CIFAR-10 data found in {root} ({listing}{hint}); looked for {PY_DIR}/ "
        f"(data_batch_1..5, test_batch, batches.meta), {BIN_DIR}/ (data_batch_1..5.bin, "
        "test_batch.bin, batches.meta.txt), those files directly in the directory, or an "
        "image folder train/<class>/*, test/<class>/*"
    )


def _from_cache(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> RawDataset | None:
    """Rebuild a RawDataset from a cache entry; ``None`` if the entry is inconsistent."""
    try:
        classes = tuple(str(c) for c in meta["classes"])
        x_train, x_test = np.asarray(arrays["x_train"]), np.asarray(arrays["x_test"])
        y_train = np.array(arrays["y_train"], dtype=np.int64)
        y_test = np.array(arrays["y_test"], dtype=np.int64)
        tb = arrays.get("train_batch")
        train_batch = None if tb is None else np.array(tb, dtype=np.int8)
        ok = (
            x_train.dtype == np.uint8
            and x_test.dtype == np.uint8
            and x_train.shape == (len(y_train), N_PIXELS)
            and x_test.shape == (len(y_test), N_PIXELS)
            and (train_batch is None or train_batch.shape == y_train.shape)
            and 0 <= min(y_train.min(), y_test.min())
            and max(y_train.max(), y_test.max()) < len(classes)
        )
        if not ok:
            return None
        return RawDataset(
            x_train, y_train, x_test, y_test, classes, train_batch, str(meta["source"])
        )
    except (KeyError, ValueError, TypeError):
        return None


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> RawDataset:
    """Load CIFAR-10 from ``data_dir`` (or ``$MLPLAB_DATA``, or a download).

    The layout is detected automatically (see module docstring).  Decoded
    arrays are cached under ``cache_dir`` (default :func:`default_cache_dir`,
    which is also where a download goes); an unwritable cache only warns.

    Returns a :class:`RawDataset`: x_train (N, 3072) uint8, y_train (N,)
    int64, x_test (M, 3072) uint8, y_test (M,) int64.  Arrays served from the
    cache are read-only memory maps.  Raises :class:`DataError`.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root = locate_data(data_dir, cache_dir=cache, progress=progress)
    layout = _detect_layout(root)
    key = _cache.cache_key(layout.fmt, layout.path, layout.stats)
    hit = _cache.load_entry(cache, key)
    if hit is not None:
        raw = _from_cache(*hit)
        if raw is not None:
            return raw
    raw = layout.read(progress)
    arrays = {
        "x_train": raw.x_train,
        "y_train": raw.y_train,
        "x_test": raw.x_test,
        "y_test": raw.y_test,
    }
    if raw.train_batch is not None:
        arrays["train_batch"] = raw.train_batch
    meta = {"format": layout.fmt, "source": raw.source, "classes": list(raw.classes)}
    _cache.save_entry(cache, key, arrays, meta)
    return raw
