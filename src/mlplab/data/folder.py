"""Image folders: ``train/<class>/*`` and ``test/<class>/*`` (or ``train/`` alone).

Layout: classes are the sorted sub-folder names (identical in ``train`` and ``test``);
files are sorted by name within a class; names starting with ``.`` are ignored. A folder
with ``train/`` and no ``test/`` gets a held-out test part: a fixed, seeded 20 % of every
class (:mod:`mlplab.data.holdout`), the same in every run.

Every image is read by the depth rules of :mod:`mlplab.data.pixels` (:func:`load_pil`,
re-exported here for ``mlplab predict``): 8-bit grey or RGB; 16-bit grey scaled to 8
bits; palette and alpha images converted; float images refused. A data set in which any
image is colour has 3 channels (its grayscale images are expanded, R = G = B); else 1.
All images must share one size, unless a ``size = (height, width)`` is given: then every
image is resized on reading to exactly that size (``LANCZOS``, after the depth
conversion). Two sizes without ``size`` are one error naming a file of each.

Decoded images are rows of ``channels * height * width`` uint8 values in plane order
(:mod:`mlplab.images`): 32x32 RGB images give CIFAR-10's official rows, bit for bit.
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

from mlplab.data.batches import RawDataset
from mlplab.data.holdout import HOLDOUT_NOTE, split_held_out
from mlplab.data.pixels import (
    decode_image,
    image_size,
    load_pil,
    open_image,
    pixels_of,
    quiet_pillow,
)
from mlplab.errors import DataError
from mlplab.images import ImageShape

#: How an image folder's ``RawDataset.source`` begins (also its cache format).
FOLDER_FORMAT = "image-folder"
#: Below this many files decoding runs in-process; above it, in a process pool.
PARALLEL_MIN_FILES = 2000
#: Images decoded per task of the process pool.
CHUNK_FILES = 500

__all__ = [
    "FolderIndex",
    "decode_files",
    "decode_image",
    "load_pil",
    "read_image_folder",
    "reference_size",
    "scan_image_folder",
]


# ------------------------------------------------------------------- scanning


@dataclass(frozen=True, eq=False)
class FolderIndex:
    """The files of an image-folder data set, in load order.

    ``train_files``/``test_files``: file paths (str); ``y_train``/``y_test``: (n,) int64
    labels; ``stats``: ``(relative path, size, mtime_ns)`` of every file, the
    input of the cache key; ``held_out``: the folder has no ``test/`` and the test files
    are a held-out part of ``train/`` (:mod:`mlplab.data.holdout`).
    """

    root: Path
    classes: tuple[str, ...]
    train_files: list[str]
    y_train: np.ndarray
    test_files: list[str]
    y_test: np.ndarray
    stats: list[tuple[str, int, int]]
    held_out: bool = False


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

    Without ``root/test`` the test files are held out of ``train`` (module docstring).
    Raises :class:`DataError` if ``train`` is missing, a split folder is empty, a class
    folder is empty, or ``train`` and ``test`` have different class folders, and on any
    error of the file system (a symlink loop, a folder it may not read).
    """
    try:
        return _scan(Path(root))
    except OSError as e:
        where = e.filename or root
        raise DataError(f"cannot read image folder {root}: {e.strerror or e} ({where})") from None


def _scan(root: Path) -> FolderIndex:
    held_out = not os.path.lexists(root / "test")
    dirs = {}
    for split in ("train",) if held_out else ("train", "test"):
        d = root / split
        if not d.is_dir():
            raise DataError(f"image folder {root} has no {split}/ sub-folder ({d} is missing)")
        dirs[split] = _class_dirs(d)
    train_set, test_set = set(dirs["train"]), set(dirs.get("test", dirs["train"]))
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
    for split in dirs:
        files: list[str] = []
        labels: list[np.ndarray] = []
        for k, name in enumerate(classes):
            f, s = _class_files(dirs[split][name], f"{split}/{name}")
            files.extend(f)
            stats.extend(s)
            labels.append(np.full(len(f), k, dtype=np.int64))
        out[split] = (files, np.concatenate(labels))
    if held_out:
        files, y = out["train"]
        tr, te = split_held_out(y, len(classes), f"image folder {root} (no test/ sub-folder)")
        out["train"] = ([files[i] for i in tr], y[tr])
        out["test"] = ([files[i] for i in te], y[te])
    return FolderIndex(
        root=root,
        classes=classes,
        train_files=out["train"][0],
        y_train=out["train"][1],
        test_files=out["test"][0],
        y_test=out["test"][1],
        stats=stats,
        held_out=held_out,
    )


# ------------------------------------------------------------------- decoding


def _size_error(ref: tuple[str, int, int], path: str, hw: tuple[int, ...]) -> DataError:
    return DataError(
        f"images differ in size: {ref[0]} is {ref[2]}x{ref[1]} and {path} is {hw[1]}x{hw[0]} "
        "pixels (width x height); give a size to resize every image on reading "
        f"(--set size=HEIGHT,WIDTH, e.g. --set size={ref[1]},{ref[2]})"
    )


def _decode_chunk(
    paths: list[str], ref: tuple[str, int, int], size: tuple[int, int] | None
) -> tuple[np.ndarray, int]:
    """``paths`` as rows ``(n, c * h * w)`` uint8 in plane order, and ``c``: 3 when any
    image is colour (grey ones expanded), else 1. Every image must be ``ref``'s size."""
    pics = []
    with quiet_pillow():
        for p in paths:
            a = pixels_of(open_image(p, size), p)
            if a.shape[:2] != ref[1:]:
                raise _size_error(ref, p, a.shape)
            pics.append(a)
    c = 3 if any(a.shape[2] == 3 for a in pics) else 1
    hwc = np.empty((len(paths), ref[1], ref[2], c), dtype=np.uint8)
    for i, a in enumerate(pics):
        hwc[i] = a  # a grey (h, w, 1) image broadcasts to R = G = B
    return hwc.transpose(0, 3, 1, 2).reshape(len(paths), c * ref[1] * ref[2]), c


class _Rows:
    """The output rows, grey ``(n, h*w)`` until the first colour chunk makes them
    ``(n, 3*h*w)`` (the grey rows decoded so far are expanded then, each plane a copy)."""

    def __init__(self, n: int, plane: int) -> None:
        self.plane, self.channels = plane, 1
        self.out = np.empty((n, plane), dtype=np.uint8)
        self.filled: list[tuple[int, int]] = []

    def put(self, start: int, rows: np.ndarray, channels: int) -> None:
        if channels == 3 and self.channels == 1:
            grey, self.channels = self.out, 3
            self.out = np.empty((len(grey), 3 * self.plane), dtype=np.uint8)
            for s, k in self.filled:
                self.out[s : s + k] = np.tile(grey[s : s + k], (1, 3))
        if channels == 1 and self.channels == 3:
            rows = np.tile(rows, (1, 3))
        self.out[start : start + len(rows)] = rows
        self.filled.append((start, len(rows)))


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


def _decode_serial(chunks, rows: _Rows, ref, size, progress: bool, desc: str) -> None:
    from tqdm import tqdm

    with tqdm(total=len(rows.out), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for start, chunk in chunks:
            rows.put(start, *_decode_chunk(chunk, ref, size))
            bar.update(len(chunk))


def reference_size(path: str, size: tuple[int, int] | None) -> tuple[str, int, int]:
    """``(path, height, width)``: the size every image must have (``size``, or ``path``'s)."""
    h, w = size if size is not None else image_size(path)
    return path, int(h), int(w)


def decode_files(
    paths: list[str],
    *,
    size: tuple[int, int] | None = None,
    ref: tuple[str, int, int] | None = None,
    progress: bool = False,
    desc: str = "decoding",
) -> tuple[np.ndarray, ImageShape]:
    """Decode images to rows ``(n, c * h * w)`` uint8 in plane order, and their shape.

    Every image is read by :func:`load_pil`'s rules and resized to ``size = (height,
    width)`` when given; else all must have the size of ``ref = (path, height, width)``
    (default: the first file's). ``c`` is 3 when any image is colour, else 1. Large
    lists are decoded by a pool of processes (one per core, ``fork`` start method on
    Linux); small ones, or where forking is not safe, in this process. ``progress``
    shows a tqdm bar on stderr.
    """
    from tqdm import tqdm

    n = len(paths)
    if ref is None:
        if not paths:
            raise DataError("no images to decode")
        ref = reference_size(paths[0], size)
    rows = _Rows(n, ref[1] * ref[2])
    chunks = [(i, paths[i : i + CHUNK_FILES]) for i in range(0, n, CHUNK_FILES)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cores or 1, 8, len(chunks))
    ctx = _pool_context() if (n >= PARALLEL_MIN_FILES and workers > 1) else None
    if ctx is None:
        _decode_serial(chunks, rows, ref, size, progress, desc)
        return rows.out, ImageShape(ref[1], ref[2], rows.channels)
    try:
        # Create the pool (and fork its workers) before tqdm starts its monitor thread.
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_decode_chunk, c, ref, size): s for s, c in chunks}
            try:
                with tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False) as bar:
                    for fut in as_completed(futures):
                        part, channels = fut.result()
                        rows.put(futures[fut], part, channels)
                        bar.update(len(part))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    except (BrokenProcessPool, OSError) as exc:  # a worker died, or no processes here
        warnings.warn(f"parallel decoding failed ({exc}); decoding in this process", stacklevel=2)
        rows = _Rows(n, ref[1] * ref[2])
        _decode_serial(chunks, rows, ref, size, progress, desc)
    return rows.out, ImageShape(ref[1], ref[2], rows.channels)


def read_image_folder(
    directory: str | os.PathLike,
    *,
    size: tuple[int, int] | None = None,
    progress: bool = True,
    index: FolderIndex | None = None,
) -> RawDataset:
    """Decode an image folder ``directory/train/<class>/*`` (and ``test/``; see :mod:`.folder`).

    Returns a :class:`RawDataset` with uint8 rows in plane order, its ``image_shape`` (3
    channels when any image is colour) and ``train_batch=None``; every image resized to
    ``size = (height, width)`` when given.
    """
    index = index if index is not None else scan_image_folder(directory)
    ref = reference_size(index.train_files[0], size)
    x_train, s_train = decode_files(
        index.train_files, size=size, ref=ref, progress=progress, desc="decoding train"
    )
    x_test, s_test = decode_files(
        index.test_files, size=size, ref=ref, progress=progress, desc="decoding test"
    )
    if s_train.channels != s_test.channels:  # one part is all grey: expand it (R = G = B)
        if s_train.channels == 1:
            x_train = np.tile(x_train, (1, 3))
        else:
            x_test = np.tile(x_test, (1, 3))
    held = f" ({HOLDOUT_NOTE})" if index.held_out else ""
    return RawDataset(
        x_train=x_train,
        y_train=index.y_train,
        x_test=x_test,
        y_test=index.y_test,
        classes=index.classes,
        train_batch=None,
        source=f"{FOLDER_FORMAT} {index.root}{held}",
        image_shape=ImageShape(ref[1], ref[2], max(s_train.channels, s_test.channels)),
    )
