"""Cache of decoded data sets as plain ``.npy`` files.

Decoding 60,000 JPEGs takes seconds; reading the decoded arrays back with
``np.load(mmap_mode="r")`` takes milliseconds.  An entry lives in
``cache_dir/<key>/`` and holds one ``.npy`` file per array (never pickled:
``allow_pickle=False``) plus ``manifest.json`` with the metadata, the shapes,
dtypes and file sizes.  The key is a SHA-256 of the data format, the resolved
data directory and, for every data file, its relative path, size and
``mtime_ns``; touching, adding or removing a file therefore yields a new key.

Every file is written to a temporary name in the entry directory and moved
into place with :func:`os.replace`; the manifest is written last, so an entry
without a manifest is incomplete and an entry whose files do not match their
manifest is corrupt.  Both are ignored (and rebuilt by the caller).  A cache
directory that cannot be written only costs a :class:`CacheWarning`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1
MANIFEST = "manifest.json"

__all__ = [
    "CACHE_VERSION",
    "CacheWarning",
    "cache_key",
    "load_entry",
    "save_entry",
]


class CacheWarning(UserWarning):
    """The decoded-array cache could not be read or written (data still loads)."""


def cache_key(fmt: str, root: Path, files: Iterable[tuple[str, int, int]]) -> str:
    """SHA-256 hex key of a data set.

    ``files`` yields ``(relative_path, size_bytes, mtime_ns)`` for every data file.
    """
    digest = hashlib.sha256()
    header = json.dumps([CACHE_VERSION, fmt, str(Path(root).resolve())])
    digest.update(header.encode())
    for rel, size, mtime_ns in files:
        digest.update(f"\n{rel}\0{size}\0{mtime_ns}".encode())
    return digest.hexdigest()


def load_entry(cache_dir: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return ``(arrays, meta)`` of a valid cache entry, or ``None``.

    Arrays are read-only memory maps.  ``None`` means there is no usable entry:
    absent, incomplete (no manifest) or corrupt (a warning says so).
    """
    entry = Path(cache_dir) / key
    manifest = entry / MANIFEST
    if not manifest.is_file():
        return None
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        if info.get("version") != CACHE_VERSION or info.get("key") != key:
            raise ValueError("manifest version or key does not match")
        arrays: dict[str, np.ndarray] = {}
        for name, spec in info["arrays"].items():
            path = entry / f"{name}.npy"
            if path.stat().st_size != int(spec["file_size"]):
                raise ValueError(f"{path.name} has the wrong size")
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.shape != tuple(spec["shape"]) or arr.dtype != np.dtype(spec["dtype"]):
                raise ValueError(f"{path.name} has the wrong shape or dtype")
            arrays[name] = arr
        meta = info["meta"]
        if not isinstance(meta, dict):
            raise ValueError("manifest meta is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"ignoring corrupt cache entry {entry} ({exc}); decoding the data again",
            CacheWarning,
            stacklevel=2,
        )
        return None
    return arrays, meta


def _atomic_write(entry: Path, final_name: str, write) -> int:
    """Write through ``write(fileobj)`` to a temp file, then rename; return the size."""
    fd, tmp = tempfile.mkstemp(dir=entry, prefix=f".{final_name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        size = os.stat(tmp).st_size
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
        os.replace(tmp, entry / final_name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


def save_entry(
    cache_dir: Path, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> bool:
    """Store ``arrays`` (name -> array, numeric dtypes only) and JSON-able ``meta``.

    Returns ``True`` on success.  Failure (unwritable directory, full disk)
    emits a :class:`CacheWarning` and returns ``False``; it never raises
    ``OSError``.
    """
    entry = Path(cache_dir) / key
    try:
        entry.mkdir(parents=True, exist_ok=True)
        # Invalidate first: a half-rewritten entry must not look complete.
        with contextlib.suppress(FileNotFoundError):
            (entry / MANIFEST).unlink()
        specs: dict[str, dict[str, Any]] = {}
        for name, arr in arrays.items():
            size = _atomic_write(
                entry, f"{name}.npy", lambda fh, a=arr: np.save(fh, a, allow_pickle=False)
            )
            specs[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str, "file_size": size}
        text = json.dumps(
            {"version": CACHE_VERSION, "key": key, "arrays": specs, "meta": dict(meta)},
            indent=1,
        )
        _atomic_write(entry, MANIFEST, lambda fh: fh.write(text.encode("utf-8")))
    except OSError as exc:
        warnings.warn(
            f"cannot write the data cache in {entry} ({exc}); continuing without cache "
            "(set MLPLAB_CACHE to a writable directory to cache decoded arrays)",
            CacheWarning,
            stacklevel=2,
        )
        return False
    return True
