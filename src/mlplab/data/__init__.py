"""Data sets (CIFAR-10's official batches, image folders of any size, ``.npz`` arrays),
caching and splits.

Typical use::

    raw = load_data(data_dir)                  # RawDataset: uint8 (N, 3072) for CIFAR-10
    raw = load_data("digits.npz")              # or any image folder / .npz (see load_data)
    splits = make_splits(raw, "45k", np.random.default_rng(0))
"""

from __future__ import annotations

from mlplab.data.batches import data_fingerprint
from mlplab.data.cache import CacheWarning
from mlplab.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_URL,
    RawDataset,
    default_cache_dir,
    download_cifar10,
    load_cifar10,
    load_data,
    locate_data,
)
from mlplab.data.preprocess import (
    SPLITS,
    Splits,
    column_stats,
    make_splits,
    parse_split,
    standardize,
    to_hwc,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "SPLITS",
    "CacheWarning",
    "RawDataset",
    "Splits",
    "column_stats",
    "data_fingerprint",
    "default_cache_dir",
    "download_cifar10",
    "load_cifar10",
    "load_data",
    "locate_data",
    "make_splits",
    "parse_split",
    "standardize",
    "to_hwc",
]
