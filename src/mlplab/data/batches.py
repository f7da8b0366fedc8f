"""The official CIFAR-10 batch files, and :class:`RawDataset`, what every reader returns.

Two official layouts exist, both with five training batches of 10,000 images
(``data_batch_1`` .. ``data_batch_5``) and one test batch (``test_batch``):

* ``cifar-10-batches-py``: Python pickles holding ``b"data"`` (uint8, (n, 3072))
  and ``b"labels"``, with the class names in ``batches.meta``;
* ``cifar-10-batches-bin``: binary files of 3073-byte records (1 label byte,
  then 3072 pixel bytes), with the class names in ``batches.meta.txt``.

These formats are CIFAR-10's by definition: 32x32 RGB images, 3072 values a row. Finding
the data, downloading it, the other formats and the cache are in :mod:`mlplab.data.cifar10`.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.data.pickles import unpickle as _unpickle
from mlplab.errors import DataError
from mlplab.images import CIFAR10_SHAPE, ImageShape

PY_DIR = "cifar-10-batches-py"
BIN_DIR = "cifar-10-batches-bin"
#: Official label order (also the sorted class-folder names).
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
#: Values in a row of the official batches: 32 x 32 pixels x 3 channels.
N_PIXELS = CIFAR10_SHAPE.size
N_TRAIN_BATCHES = 5

__all__ = [
    "BIN_DIR",
    "CIFAR10_CLASSES",
    "MAX_RECORDS",
    "N_PIXELS",
    "PY_DIR",
    "RawDataset",
    "official_files",
    "read_binary_batches",
    "read_python_batches",
]


@dataclass(frozen=True, eq=False)
class RawDataset:
    """A data set as stored: rows of pixels (or features) and int64 labels.

    x_train: (N, d), either uint8 pixels or float64 features.  Images are rows in plane
        order (:mod:`mlplab.images`): for CIFAR-10, 1024 R values then 1024 G then 1024
        B, each plane row-major 32x32.  May be a read-only memory map of the cache.
    y_train: (N,) int64 labels in [0, K).
    x_test: (M, d), the dtype of x_train.  y_test: (M,) int64.
    classes: the K class names, label order.
    train_batch: (N,) int8, the official ``data_batch_k`` (k = 1..5) each
        training sample came from; ``None`` for other formats.
    source: human description of where the data came from.
    image_shape: the shape of every image (``d == image_shape.size``), or ``None`` for
        flat features.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    train_batch: np.ndarray | None
    source: str
    image_shape: ImageShape | None = CIFAR10_SHAPE

    @property
    def scale(self) -> float:
        """What one unit of the rows is divided by: 255 for uint8 pixels, 1 for features."""
        return 255.0 if self.x_train.dtype == np.uint8 else 1.0


# ------------------------------------------------------------- python pickles


def _get(d: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    found = ", ".join(sorted(repr(k) for k in d)) or "none"
    raise DataError(f"{path}: missing key b{key!r} (keys found: {found})")


def _check_pixels(x: Any, path: Path) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        desc = type(x).__name__
    elif x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != N_PIXELS:
        desc = f"{x.dtype} array of shape {x.shape}"
    else:
        return x
    raise DataError(f"{path}: b'data' must be a uint8 array of shape (n, 3072), found {desc}")


def _check_labels(y: Any, n: int, n_classes: int, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(y)
    except (ValueError, TypeError):
        arr = np.asarray([], dtype=object)
    if arr.ndim != 1 or arr.shape[0] != n or (n and arr.dtype.kind not in "iu"):
        raise DataError(f"{path}: labels must be {n} integers (one per image), found {arr.shape}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        raise DataError(
            f"{path}: label {int(arr[bad][0])} out of range [0, {n_classes}) "
            f"at record {int(np.flatnonzero(bad)[0])}"
        )
    return arr


def _assemble(
    parts: list[tuple[np.ndarray, np.ndarray]],
    test: tuple[np.ndarray, np.ndarray],
    classes: tuple[str, ...],
    source: str,
) -> RawDataset:
    if not len(test[1]) or not sum(len(p[1]) for p in parts):
        raise DataError(f"{source}: the {'test' if not len(test[1]) else 'training'} set is empty")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    batch = np.concatenate(
        [np.full(len(p[1]), k, dtype=np.int8) for k, p in enumerate(parts, start=1)]
    )
    return RawDataset(
        x_train=x_train,
        y_train=y_train,
        x_test=np.ascontiguousarray(test[0]),
        y_test=test[1],
        classes=classes,
        train_batch=batch,
        source=source,
    )


def official_files(directory: Path, suffix: str) -> list[Path]:
    """The six batch files (``suffix`` "" or ".bin"), training batches first; all must exist."""
    names = [f"data_batch_{k}{suffix}" for k in range(1, N_TRAIN_BATCHES + 1)]
    names.append(f"test_batch{suffix}")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(missing)} (need {', '.join(names)})")
    return [directory / n for n in names]


def read_python_batches(directory: str | os.PathLike) -> RawDataset:
    """Read the official Python pickles (``cifar-10-batches-py``) in ``directory``.

    Trust: unpickling can in general run arbitrary code.  These pickles are
    only opened from a directory the user passed explicitly (``--data`` /
    ``MLPLAB_DATA``, trusted) or extracted from an archive whose MD5 matched
    the published one, and always through a restricted unpickler whose
    ``find_class`` allows only numpy array/dtype reconstruction (plus latin-1
    ``_codecs.encode`` of pickle protocol 2); any other global raises
    :class:`DataError` without being called.  Files are opened with
    ``encoding="bytes"``.

    Returns a :class:`RawDataset` with x_train (N, 3072), x_test (M, 3072) uint8.
    Raises :class:`DataError` naming the file on missing keys, wrong shapes or
    labels out of range.
    """
    directory = Path(directory)
    files = official_files(directory, "")
    meta_path = directory / "batches.meta"
    if meta_path.is_file():
        names = _get(_unpickle(meta_path), "label_names", meta_path)
        try:
            classes = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
        except (TypeError, UnicodeDecodeError) as exc:
            raise DataError(f"{meta_path}: invalid label_names ({exc})") from None
        if not classes:
            raise DataError(f"{meta_path}: label_names is empty")
    else:
        classes = CIFAR10_CLASSES
    parts = []
    for path in files:
        d = _unpickle(path)
        x = _check_pixels(_get(d, "data", path), path)
        y = _check_labels(_get(d, "labels", path), x.shape[0], len(classes), path)
        parts.append((x, y))
    test = parts.pop()
    return _assemble(parts, test, classes, f"{PY_DIR} in {directory}")


# ------------------------------------------------------------------ binary


#: Images in one batch file at most (official: 10,000); a larger file is refused unread.
MAX_RECORDS = 100_000


def _read_bin(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + N_PIXELS
    try:
        size = path.stat().st_size
        if size == 0 or size % record:
            raise DataError(
                f"{path}: wrong record size or truncated file: {size} bytes is not a "
                f"positive multiple of {record} (1 label byte + 3072 pixel bytes per image)"
            )
        if size > MAX_RECORDS * record:  # checked before reading (a sparse file, a mistake)
            raise DataError(
                f"{path}: {size // record} images, more than the {MAX_RECORDS} a batch file may "
                "hold (official batches have 10,000)"
            )
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.size != size:
        raise DataError(f"{path}: read {raw.size} bytes, expected {size} (file changed?)")
    recs = raw.reshape(-1, record)
    y = recs[:, 0].astype(np.int64)
    bad = np.flatnonzero(y >= n_classes)
    if bad.size:
        raise DataError(
            f"{path}: label {int(y[bad[0]])} out of range [0, {n_classes}) at record {int(bad[0])}"
        )
    return np.ascontiguousarray(recs[:, 1:]), y


def read_binary_batches(directory: str | os.PathLike) -> RawDataset:
    """Read the official binary batches (``cifar-10-batches-bin``) in ``directory``.

    Each file is a sequence of 3073-byte records: 1 label byte, then 3072
    pixel bytes (R plane, G plane, B plane).  Returns a :class:`RawDataset`
    with x_train (N, 3072), x_test (M, 3072) uint8.  Raises
    :class:`DataError` naming the file on a wrong record size/truncation or a
    label out of range.
    """
    directory = Path(directory)
    files = official_files(directory, ".bin")
    meta_path = directory / "batches.meta.txt"
    classes: tuple[str, ...] = CIFAR10_CLASSES
    if meta_path.is_file():
        try:
            text = meta_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {meta_path}: {exc}") from None
        classes = tuple(line.strip() for line in text.splitlines() if line.strip())
        if not classes:
            raise DataError(f"{meta_path}: no class names found")
    parts = [_read_bin(path, len(classes)) for path in files]
    test = parts.pop()
    return _assemble(parts, test, classes, f"{BIN_DIR} in {directory}")


def data_fingerprint(raw: RawDataset) -> str:
    """CRC-32 of every pixel and label, with the sizes (0.1 s for CIFAR-10: a changed image
    is another data set)."""
    crc = 0
    for a in (raw.x_train, raw.y_train, raw.x_test, raw.y_test):
        arr = np.ascontiguousarray(a)
        crc = zlib.crc32(f"{arr.shape}{arr.dtype}".encode(), crc)
        crc = zlib.crc32(arr.data.cast("B"), crc)
    return f"crc32:{crc:08x}:{len(raw.y_train)}:{len(raw.y_test)}"
