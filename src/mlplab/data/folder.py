"""Reader for an image-folder copy of CIFAR-10: ``train/<class>/*``, ``test/<class>/*``.

Classes are the sorted sub-folder names (identical in ``train`` and ``test``);
files are sorted by name within a class; names starting with ``.`` are ignored.
Every image must be a 32x32 RGB image that Pillow can decode; nothing is
converted silently.  Decoded images are returned in the official CIFAR-10
order: a row of 3072 uint8 values holding the R plane, then G, then B, each
plane row-major 32x32.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mlplab.errors import DataError

IMAGE_SIDE = 32
N_PIXELS = 3 * IMAGE_SIDE * IMAGE_SIDE

#: Below this many files decoding runs in-process; above it, in a process pool.
PARALLEL_MIN_FILES = 2000
#: Images decoded per task of the process pool.
CHUNK_FILES = 500

__all__ = [
    "FolderIndex",
    "decode_files",
    "decode_image",
    "scan_image_folder",
]


@dataclass(frozen=True, eq=False)
class FolderIndex:
    """The files of an image-folder data set, in load order.

    ``train_files``/``test_files``: file paths (str); ``y_train``/``y_test``: (n,) int64
    labels; ``stats``: ``(relative path, size, mtime_ns)`` of every file, the
    input of the cache key.
    """

    root: Path
    classes: tuple[str, ...]
    train_files: list[str]
    y_train: np.ndarray
    test_files: list[str]
    y_test: np.ndarray
    stats: list[tuple[str, int, int]]


def _visible(entries: list[os.DirEntry]) -> list[os.DirEntry]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    try:
        with os.scandir(split_dir) as it:
            entries = _visible(list(it))
    except OSError as exc:
        raise DataError(f"cannot list {split_dir}: {exc.strerror or exc}") from None
    classes = {e.name: Path(e.path) for e in entries if e.is_dir()}
    if not classes:
        raise DataError(f"{split_dir} has no class sub-folders (expected {split_dir}/<class>/*)")
    return classes


def _class_files(class_dir: Path, rel_prefix: str) -> tuple[list[str], list[tuple[str, int, int]]]:
    try:
        with os.scandir(class_dir) as it:
            entries = _visible(list(it))
        files, stats = [], []
        for e in entries:
            if not e.is_file():
                raise DataError(
                    f"{e.path} is not an image file (expected only images in {class_dir})"
                )
            st = e.stat()
            files.append(e.path)
            stats.append((f"{rel_prefix}/{e.name}", st.st_size, st.st_mtime_ns))
    except OSError as exc:
        raise DataError(f"cannot list {class_dir}: {exc.strerror or exc}") from None
    if not files:
        raise DataError(f"class folder {class_dir} is empty")
    return files, stats


def scan_image_folder(root: str | os.PathLike) -> FolderIndex:
    """List the images of ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Raises :class:`DataError` if a split folder is missing or empty, a class
    folder is empty, or ``train`` and ``test`` have different class folders, and on any
    error of the file system (a symlink loop, a folder it may not read).
    """
    try:
        return _scan(Path(root))
    except OSError as e:
        where = e.filename or root
        raise DataError(f"cannot read image folder {root}: {e.strerror or e} ({where})") from None


def _scan(root: Path) -> FolderIndex:
    dirs = {}
    for split in ("train", "test"):
        d = root / split
        if not d.is_dir():
            raise DataError(f"image folder {root} has no {split}/ sub-folder ({d} is missing)")
        dirs[split] = _class_dirs(d)
    train_set, test_set = set(dirs["train"]), set(dirs["test"])
    if train_set != test_set:
        only_train = sorted(train_set - test_set)
        only_test = sorted(test_set - train_set)
        raise DataError(
            f"class folders of {root / 'train'} and {root / 'test'} differ: "
            f"only in train: {only_train or 'none'}; only in test: {only_test or 'none'}"
        )
    classes = tuple(sorted(train_set))
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    stats: list[tuple[str, int, int]] = []
    for split in ("train", "test"):
        files: list[str] = []
        labels: list[np.ndarray] = []
        for k, name in enumerate(classes):
            f, s = _class_files(dirs[split][name], f"{split}/{name}")
            files.extend(f)
            stats.extend(s)
            labels.append(np.full(len(f), k, dtype=np.int64))
        out[split] = (files, np.concatenate(labels))
    return FolderIndex(
        root=root,
        classes=classes,
        train_files=out["train"][0],
        y_train=out["train"][1],
        test_files=out["test"][0],
        y_test=out["test"][1],
        stats=stats,
    )


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one 32x32 RGB image to a (32, 32, 3) uint8 array (HWC).

    Raises :class:`DataError` naming the file if it is not a decodable image,
    not of mode ``RGB`` (grayscale, RGBA, palette... are refused, not
    converted) or not 32x32 pixels.
    """
    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                raise DataError(
                    f"{path}: image mode is {im.mode!r}, expected 'RGB' "
                    "(32x32 colour images only; convert the file first)"
                )
            if im.size != (IMAGE_SIDE, IMAGE_SIDE):
                w, h = im.size
                raise DataError(f"{path}: image is {w}x{h} pixels, expected 32x32")
            im.load()
            buf = im.tobytes()
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image file ({exc})") from None
    if len(buf) != N_PIXELS:  # defensive: a decoder returned a short buffer
        raise DataError(f"{path}: decoded to {len(buf)} bytes, expected {N_PIXELS}")
    return np.frombuffer(buf, dtype=np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE, 3)


def _decode_chunk(paths: list[str]) -> np.ndarray:
    """Decode ``paths`` to an (n, 3072) uint8 array in CIFAR plane order."""
    hwc = np.empty((len(paths), IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        hwc[i] = decode_image(p)
    return hwc.transpose(0, 3, 1, 2).reshape(len(paths), N_PIXELS)


def _pool_context():
    """A ``fork`` context when forking is safe here, else ``None`` (decode in-process).

    ``spawn`` would re-import the caller's ``__main__`` (breaking scripts that
    lack a main guard), so only ``fork`` is used: on Linux, from a process
    without other Python threads.
    """
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return None
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    return multiprocessing.get_context("fork")


def _decode_serial(
    chunks: list[tuple[int, list[str]]], out: np.ndarray, progress: bool, desc: str
) -> np.ndarray:
    from tqdm import tqdm

    with tqdm(total=len(out), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start, chunk in chunks:
            out[start : start + len(chunk)] = _decode_chunk(chunk)
            bar.update(len(chunk))
    return out


def decode_files(paths: list[str], *, progress: bool = False, desc: str = "decoding") -> np.ndarray:
    """Decode images to an (n, 3072) uint8 array, R plane then G then B.

    Large lists are decoded by a pool of processes (one per core, ``fork``
    start method on Linux); small ones, or where forking is not safe, in this
    process.  ``progress`` shows a tqdm bar on stderr.
    """
    from tqdm import tqdm

    n = len(paths)
    out = np.empty((n, N_PIXELS), dtype=np.uint8)
    chunks = [(i, paths[i : i + CHUNK_FILES]) for i in range(0, n, CHUNK_FILES)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cores or 1, 8, len(chunks))
    ctx = _pool_context() if (n >= PARALLEL_MIN_FILES and workers > 1) else None
    if ctx is None:
        return _decode_serial(chunks, out, progress, desc)
    try:
        # Create the pool (and fork its workers) before tqdm starts its monitor thread.
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_decode_chunk, c): (start, len(c)) for start, c in chunks}
            try:
                with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
                    for fut in as_completed(futures):
                        start, size = futures[fut]
                        out[start : start + size] = fut.result()
                        bar.update(size)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except (BrokenProcessPool, OSError) as exc:  # a worker died, or no processes here
        warnings.warn(f"parallel decoding failed ({exc}); decoding in this process", stacklevel=2)
        return _decode_serial(chunks, out, progress, desc)
    return out
