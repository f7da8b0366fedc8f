"""CIFAR-10 loading (official python/binary batches, image folders), caching and splits.

Typical use::

    raw = load_cifar10(data_dir)               # RawDataset, uint8 (N, 3072)
    splits = make_splits(raw, "45k", np.random.default_rng(0))
"""

from __future__ import annotations

from mlplab.data.cache import CacheWarning
from mlplab.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_URL,
    RawDataset,
    default_cache_dir,
    download_cifar10,
    load_cifar10,
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
    "default_cache_dir",
    "download_cifar10",
    "load_cifar10",
    "locate_data",
    "make_splits",
    "parse_split",
    "standardize",
    "to_hwc",
]
