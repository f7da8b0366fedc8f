"""Prepared splits on disk: built once, memory-mapped by every process that trains on them.

Several worker processes training on the same split would each hold a private copy of its
standardised float arrays (553 MB for 45,000 float32 images). Written once as ``.npy``
files and opened with ``mmap_mode="r"``, they share one copy in the page cache.
``meta.json`` records the data it was built from (source, sizes, image shape), the image
shape and scale of the rows (a split written before they were recorded is CIFAR-10's:
32x32 RGB, scale 255) and the generator state.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.config import Config
from mlplab.data.batches import RawDataset
from mlplab.data.preprocess import Splits, make_splits, whiten_splits
from mlplab.errors import MlplabError
from mlplab.fileio import atomic_directory, atomic_write, atomic_write_json, read_json
from mlplab.images import CIFAR10_SHAPE, shape_or_none
from mlplab.machine import blas_threads

#: The test set is left out: a search scores validation accuracy and never looks at it.
ARRAYS = ("x_train", "y_train", "x_val", "y_val", "mean", "std")


def _array_names(cfg: Config) -> tuple[str, ...]:
    """The arrays of a prepared split: :data:`ARRAYS`, and the ZCA matrix of a whitened one."""
    return ARRAYS + (("whiten",) if cfg.zca_eps else ())


def split_key(cfg: Config) -> str:
    """What decides a split's arrays: split, n_train, dtype, whitening, image size (when
    the recipe resizes) and seed. A recipe without ``size`` keeps its earlier key."""
    zca = f"-zca{cfg.zca_eps!r}" if cfg.zca_eps else ""
    size = list(getattr(cfg, "size", None) or ())
    resized = f"-size{size[0]}x{size[1]}" if len(size) == 2 else ""
    name = cfg.split.replace("/", "of")
    return f"{name}-n{cfg.n_train}-{cfg.dtype}{zca}{resized}-seed{cfg.seed}"


def _shape_list(shape) -> list[int] | None:
    return None if shape is None else shape.to_list()


def recipe_splits(
    raw: RawDataset, cfg: Config, rng: np.random.Generator, *, whiten: bool = True
) -> Splits:
    """The splits ``cfg`` trains on (split, n_train, dtype, whitening), built under the
    recipe's BLAS threads so that whitening's GEMMs round as the run's do.

    ``whiten=False`` leaves the whitening to :func:`whiten_recipe_splits`, so that a caller
    can free the raw pixels first: the fit's float64 eigendecomposition is the largest
    transient of a run.
    """
    with blas_threads(cfg.threads):
        sp = make_splits(
            raw, cfg.split, rng, n_train=cfg.n_train or None, dtype=np.dtype(cfg.dtype)
        )
    return whiten_recipe_splits(sp, cfg) if whiten else sp


def whiten_recipe_splits(splits: Splits, cfg: Config) -> Splits:
    """``splits`` whitened as ``cfg`` asks (unchanged without ``zca_eps``), under its BLAS
    threads."""
    if not cfg.zca_eps:
        return splits
    with blas_threads(cfg.threads):
        return whiten_splits(splits, cfg.zca_eps, flips=cfg.flip or cfg.flip_average)


def prepare_splits(raw: RawDataset, configs: list[Config], root: Path) -> None:
    """Write the split of each of ``configs`` and the generator state it leaves under ``root``.

    Exactly what :func:`mlplab.train.run.run_experiment` builds from the recipe's seed. A
    split directory appears complete or not at all (:func:`mlplab.fileio.atomic_directory`);
    one of other data (another source or size) is rebuilt.
    """
    root.mkdir(parents=True, exist_ok=True)
    data = {"source": raw.source, "n": [len(raw.x_train), len(raw.x_test)]}
    geometry = {"image_shape": _shape_list(raw.image_shape), "scale": raw.scale}
    for cfg in configs:
        final = root / split_key(cfg)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, MlplabError):
            old = read_json(final / "meta.json", what="prepared split", max_bytes=1 << 20)
            if old["data"] == data and _geometry(old) == geometry:
                continue
        rng = np.random.default_rng(cfg.seed)
        sp = recipe_splits(raw, cfg, rng)
        with atomic_directory(final) as tmp:
            for name in _array_names(cfg):
                _save_npy(tmp / f"{name}.npy", getattr(sp, name))
            meta = {"classes": list(sp.classes), "name": sp.name, "rng": rng.bit_generator.state}
            atomic_write_json(tmp / "meta.json", {"data": data, **geometry, **meta})
        del sp  # one split in memory at a time


def _geometry(meta: dict) -> dict:
    """Image shape and scale of a prepared split (CIFAR-10's when it predates them)."""
    return {
        "image_shape": meta.get("image_shape", CIFAR10_SHAPE.to_list()),
        "scale": float(meta.get("scale", 255.0)),
    }


def _save_npy(path: Path, a: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, a, allow_pickle=False))


def load_split(root: Path, cfg: Config) -> tuple[Splits, np.random.Generator]:
    """The prepared split of ``cfg`` (pixel arrays memory-mapped, read-only; an empty test
    part) and a generator in the state building the split left, as ``run_experiment``
    continues with it."""
    d = root / split_key(cfg)
    names = _array_names(cfg)
    try:
        meta = read_json(d / "meta.json", what="prepared split", max_bytes=1 << 20, base=d)
        geometry = _geometry(meta)
        geometry["image_shape"] = shape_or_none(geometry["image_shape"])
        arrays = {
            n: np.load(d / f"{n}.npy", mmap_mode="r" if n[0] == "x" else None, allow_pickle=False)
            for n in names
        }
    except (OSError, ValueError, TypeError, MlplabError) as e:
        raise MlplabError(
            f"the prepared split {d} is missing or damaged ({e}); run the command again"
        ) from None
    rng = np.random.default_rng(0)
    rng.bit_generator.state = meta["rng"]
    empty = np.empty((0, arrays["x_train"].shape[1]), np.uint8)
    test = {"test_pixels": empty, "y_test": np.empty(0, np.int64)}
    fields: dict[str, Any] = {**arrays, **test, **geometry}  # by the field names of Splits
    splits = Splits(**fields, classes=tuple(meta["classes"]), name=meta["name"])
    return splits, rng
