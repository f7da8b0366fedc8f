"""Same-size corruption of a cached ``.npy`` is detected and the data decoded again.

A flipped byte keeps the file size, shape and dtype, so only the checksum in the
manifest can tell: without it the damaged pixels would be served silently.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlplab.data import CacheWarning, load_cifar10
from mlplab.data import cache as cache_mod
from mlplab.data import folder as folder_mod


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))


def _write_folder(root: Path, classes=("cat", "dog"), n_train=3, n_test=2):
    """A PNG image folder; returns the expected (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(1)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                hwc = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(hwc, "RGB").save(root / split / name / f"{i:04d}.png")
                xs.append(hwc.transpose(2, 0, 1).reshape(3072))
                ys.append(k)
        out += [np.stack(xs), np.array(ys)]
    return tuple(out)


def _load(root: Path):
    return load_cifar10(root, progress=False)  # cache: $MLPLAB_CACHE


def _entry(tmp_path: Path) -> Path:
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if (p / "manifest.json").is_file()]
    return entry


def _count_decodes(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = folder_mod.decode_files
    monkeypatch.setattr(
        folder_mod, "decode_files", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    return calls


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))  # same size


@pytest.mark.parametrize(
    ("name", "where"),
    [("x_train", "middle"), ("x_train", "last"), ("x_test", "first_data"), ("y_test", "last")],
)
def test_flipped_byte_is_detected_and_rebuilt(tmp_path, monkeypatch, name, where):
    x_train, y_train, x_test, y_test = _write_folder(tmp_path / "imgs")
    _load(tmp_path / "imgs")
    entry = _entry(tmp_path)
    path = entry / f"{name}.npy"
    size = path.stat().st_size
    header = size - np.load(path, mmap_mode="r").nbytes
    offset = {"middle": header + (size - header) // 2, "last": size - 1, "first_data": header}
    _flip(path, offset[where])
    assert path.stat().st_size == size

    calls = _count_decodes(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = _load(tmp_path / "imgs")
    assert calls, "corrupt cache entry was used instead of decoding again"
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(msgs) == 1 and "checksum" in msgs[0] and f"{name}.npy" in msgs[0]
    for got, want in zip(
        (raw.x_train, raw.y_train, raw.x_test, raw.y_test),
        (x_train, y_train, x_test, y_test),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)

    # the entry was rewritten: the next load is a silent cache hit with the right pixels
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = _load(tmp_path / "imgs")
    assert not calls
    np.testing.assert_array_equal(again.x_train, x_train)
    np.testing.assert_array_equal(again.x_test, x_test)
    assert not again.x_train.flags.writeable  # still a memory map


def test_manifest_records_crc32_of_each_file(tmp_path):
    _write_folder(tmp_path / "imgs")
    _load(tmp_path / "imgs")
    entry = _entry(tmp_path)
    info = json.loads((entry / "manifest.json").read_text())
    assert info["version"] == cache_mod.CACHE_VERSION
    assert set(info["arrays"]) == {"x_train", "y_train", "x_test", "y_test"}
    for name, spec in info["arrays"].items():
        assert spec["crc32"] == cache_mod.file_crc32(entry / f"{name}.npy")


def test_manifest_without_checksum_is_rebuilt(tmp_path, monkeypatch):
    x_train, *_ = _write_folder(tmp_path / "imgs")
    _load(tmp_path / "imgs")
    manifest = _entry(tmp_path) / "manifest.json"
    info = json.loads(manifest.read_text())
    for spec in info["arrays"].values():
        del spec["crc32"]
    manifest.write_text(json.dumps(info))
    calls = _count_decodes(monkeypatch)
    with pytest.warns(CacheWarning, match="ignoring corrupt cache entry"):
        raw = _load(tmp_path / "imgs")
    assert calls
    np.testing.assert_array_equal(raw.x_train, x_train)


def test_save_entry_checksum_matches_any_layout(tmp_path):
    arrays = {
        "c": np.arange(24, dtype=np.int64).reshape(4, 6),
        "f": np.asfortranarray(np.arange(24, dtype=np.uint8).reshape(4, 6)),
        "view": np.arange(40, dtype=np.uint8).reshape(4, 10)[:, ::3],
    }
    assert cache_mod.save_entry(tmp_path, "k", arrays, {})
    arrays_back, _ = cache_mod.load_entry(tmp_path, "k")
    for name, arr in arrays.items():
        np.testing.assert_array_equal(arrays_back[name], arr)
