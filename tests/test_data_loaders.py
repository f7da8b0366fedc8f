"""Tests of CIFAR-10 readers, the decoded-array cache and the download path.

All data is synthetic and written to ``tmp_path``; the download is served by a
local ``http.server`` on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlplab.data import CacheWarning, RawDataset, load_cifar10, locate_data, to_hwc
from mlplab.data import cache as cache_mod
from mlplab.data import cifar10 as cifar_mod
from mlplab.data import folder as folder_mod
from mlplab.errors import DataError

CLASSES = cifar_mod.CIFAR10_CLASSES
PER_BATCH = (3, 4, 2, 3, 3)
N_TEST = 4


# --------------------------------------------------------------------- writers


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _expected(rng: np.random.Generator, n_classes: int = 10):
    xs = [_images(rng, n) for n in PER_BATCH]
    ys = [rng.integers(0, n_classes, size=n) for n in PER_BATCH]
    xt, yt = _images(rng, N_TEST), rng.integers(0, n_classes, size=N_TEST)
    tb = np.concatenate([np.full(n, k, np.int8) for k, n in enumerate(PER_BATCH, start=1)])
    return xs, ys, xt, yt, tb


def _dump(obj: object, path: Path, protocol: int = 3) -> None:
    data = pickle.dumps(obj, protocol=protocol)
    # Make it look like the official (Python 2 era) files: numpy.core.multiarray.
    data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(data)


def write_py(d: Path, seed: int = 0, protocol: int = 3, meta: bool = True):
    """A tiny cifar-10-batches-py in ``d``; returns the expected arrays."""
    d.mkdir(parents=True, exist_ok=True)
    xs, ys, xt, yt, tb = _expected(np.random.default_rng(seed))
    for k, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
        batch = {
            b"batch_label": f"training batch {k} of 5".encode(),
            b"labels": [int(v) for v in y],
            b"data": x,
            b"filenames": [b"img.png"] * len(y),
        }
        _dump(batch, d / f"data_batch_{k}", protocol)
    _dump({b"labels": [int(v) for v in yt], b"data": xt}, d / "test_batch", protocol)
    if meta:
        names = [c.encode() for c in CLASSES]
        _dump({b"label_names": names, b"num_vis": 3072}, d / "batches.meta", protocol)
    return np.concatenate(xs), np.concatenate(ys), xt, yt, tb


def write_bin(d: Path, seed: int = 0):
    """A tiny cifar-10-batches-bin in ``d``; returns the expected arrays."""
    d.mkdir(parents=True, exist_ok=True)
    xs, ys, xt, yt, tb = _expected(np.random.default_rng(seed))

    def records(x, y):
        return np.concatenate([y.astype(np.uint8)[:, None], x], axis=1).tobytes()

    for k, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
        (d / f"data_batch_{k}.bin").write_bytes(records(x, y))
    (d / "test_batch.bin").write_bytes(records(xt, yt))
    (d / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")
    return np.concatenate(xs), np.concatenate(ys), xt, yt, tb


def write_folder(root: Path, classes=("cat", "airplane", "dog"), n_train=3, n_test=2, seed=0):
    """An image folder of PNGs; returns (x_train, y_train, x_test, y_test, classes)."""
    rng = np.random.default_rng(seed)
    ordered = tuple(sorted(classes))
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys = [], []
        for k, name in enumerate(ordered):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                hwc = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(hwc, "RGB").save(d / f"{i:04d}.png")
                xs.append(hwc.transpose(2, 0, 1).reshape(3072))
                ys.append(k)
        out[split] = (np.stack(xs), np.array(ys))
    return (*out["train"], *out["test"], ordered)


def _load(path, tmp_path: Path, **kw) -> RawDataset:
    return load_cifar10(path, cache_dir=tmp_path / "cache", progress=False, **kw)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "default-cache"))


# ------------------------------------------------------------ official formats


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python_batches_roundtrip(tmp_path, protocol):
    x, y, xt, yt, tb = write_py(tmp_path / "d" / "cifar-10-batches-py", protocol=protocol)
    raw = _load(tmp_path / "d", tmp_path)
    np.testing.assert_array_equal(raw.x_train, x)
    np.testing.assert_array_equal(raw.y_train, y)
    np.testing.assert_array_equal(raw.x_test, xt)
    np.testing.assert_array_equal(raw.y_test, yt)
    np.testing.assert_array_equal(raw.train_batch, tb)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    assert raw.train_batch.dtype == np.int8
    assert raw.classes == CLASSES
    assert "cifar-10-batches-py" in raw.source


def test_python_batches_dir_itself_and_default_classes(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    x, *_ = write_py(d, meta=False)
    raw = _load(d, tmp_path)
    np.testing.assert_array_equal(raw.x_train, x)
    assert raw.classes == CLASSES


def test_binary_batches_roundtrip(tmp_path):
    x, y, xt, yt, tb = write_bin(tmp_path / "d" / "cifar-10-batches-bin")
    raw = _load(tmp_path / "d", tmp_path)
    np.testing.assert_array_equal(raw.x_train, x)
    np.testing.assert_array_equal(raw.y_train, y)
    np.testing.assert_array_equal(raw.x_test, xt)
    np.testing.assert_array_equal(raw.y_test, yt)
    np.testing.assert_array_equal(raw.train_batch, tb)
    assert raw.classes == CLASSES
    # the batches directory itself works too
    raw2 = _load(tmp_path / "d" / "cifar-10-batches-bin", tmp_path)
    np.testing.assert_array_equal(raw2.x_test, xt)


def test_binary_pixel_order_matches_image_folder(tmp_path):
    """The same pictures through .bin and through PNG give identical rows (R plane first)."""
    hwc = np.zeros((2, 32, 32, 3), np.uint8)
    hwc[0, :, :, 0] = 200  # pure red picture
    hwc[1] = np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251  # position-dependent
    x_png = []
    for i, im in enumerate(hwc):
        for split in ("train", "test"):
            d = tmp_path / "f" / split / "a"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(d / f"{i}.png")
    raw = _load(tmp_path / "f", tmp_path)
    x_png = raw.x_train
    assert (x_png[0, :1024] == 200).all() and (x_png[0, 1024:] == 0).all()
    np.testing.assert_array_equal(to_hwc(x_png), hwc)
    # binary file holding the official byte layout of the same pictures
    d = tmp_path / "b"
    d.mkdir()
    rec = np.concatenate(
        [np.zeros((2, 1), np.uint8), hwc.transpose(0, 3, 1, 2).reshape(2, 3072)], axis=1
    )
    for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
        (d / name).write_bytes(rec.tobytes())
    raw_bin = _load(d, tmp_path)
    np.testing.assert_array_equal(raw_bin.x_train[:2], x_png)


def test_bin_truncated(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    f = d / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_3\.bin.*(truncated|record size)"):
        _load(d, tmp_path)


def test_bin_wrong_record_size(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    (d / "test_batch.bin").write_bytes(bytes(3072 * 5))  # records without label byte
    with pytest.raises(DataError, match=r"test_batch\.bin.*wrong record size"):
        _load(d, tmp_path)


def test_bin_label_out_of_range(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    f = d / "data_batch_2.bin"
    data = bytearray(f.read_bytes())
    data[3073] = 10  # label byte of the second record
    f.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"data_batch_2\.bin.*label 10"):
        _load(d, tmp_path)


def test_bin_missing_file(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    (d / "data_batch_4.bin").unlink()
    with pytest.raises(DataError, match=r"missing data_batch_4\.bin"):
        _load(d, tmp_path)


def test_pickle_missing_key(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    _dump({b"data": np.zeros((2, 3072), np.uint8)}, d / "data_batch_2")
    with pytest.raises(DataError, match=r"data_batch_2.*missing key b'labels'"):
        _load(d, tmp_path)


def test_pickle_wrong_shape(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    _dump({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, d / "test_batch")
    with pytest.raises(DataError, match=r"test_batch.*\(n, 3072\)"):
        _load(d, tmp_path)


def test_pickle_labels_mismatch(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    _dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, d / "data_batch_1")
    with pytest.raises(DataError, match=r"data_batch_1.*labels"):
        _load(d, tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_forbidden_global_not_executed(tmp_path, protocol):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    marker = tmp_path / "pwned"
    evil = {b"data": _Evil(marker), b"labels": [0]}
    (d / "data_batch_5").write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(DataError, match=r"data_batch_5.*refusing.*system"):
        _load(d, tmp_path)
    assert not marker.exists()


def test_pickle_garbage(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    (d / "batches.meta").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(DataError, match=r"batches\.meta"):
        _load(d, tmp_path)


# --------------------------------------------------------------- image folder


def test_folder_png_exact(tmp_path):
    x, y, xt, yt, classes = write_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "imgs" / "test" / ".hidden").mkdir()
    raw = _load(tmp_path / "imgs", tmp_path)
    assert raw.classes == classes == ("airplane", "cat", "dog")
    np.testing.assert_array_equal(raw.x_train, x)
    np.testing.assert_array_equal(raw.y_train, y)
    np.testing.assert_array_equal(raw.x_test, xt)
    np.testing.assert_array_equal(raw.y_test, yt)
    assert raw.train_batch is None
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64


def test_folder_sorted_by_name_and_jpeg(tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        d = root / split / "x"
        d.mkdir(parents=True)
        for name in ("b.jpg", "a.jpg", "c.jpeg"):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(d / name)
    raw = _load(root, tmp_path)
    assert raw.x_train.shape == (3, 3072)
    ref = np.asarray(Image.open(root / "train" / "x" / "a.jpg"))
    np.testing.assert_array_equal(to_hwc(raw.x_train)[0], ref)


def test_folder_parallel_decode_matches_serial(tmp_path, monkeypatch):
    x, _, xt, _, _ = write_folder(tmp_path / "imgs", n_train=5, n_test=3)
    monkeypatch.setattr(folder_mod, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(folder_mod, "CHUNK_FILES", 2)
    pools = []
    real_pool = folder_mod.ProcessPoolExecutor
    monkeypatch.setattr(
        folder_mod, "ProcessPoolExecutor", lambda *a, **k: pools.append(1) or real_pool(*a, **k)
    )
    raw = _load(tmp_path / "imgs", tmp_path)
    if folder_mod._pool_context() is not None and (os.cpu_count() or 1) > 1:
        assert pools, "the process pool was not used"
    np.testing.assert_array_equal(raw.x_train, x)
    np.testing.assert_array_equal(raw.x_test, xt)
    # an error inside a worker reaches the caller as a DataError naming the file
    bad = tmp_path / "imgs" / "train" / "dog" / "0003.png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match=r"0003\.png"):
        _load(tmp_path / "imgs", tmp_path)


def _bad_folder(tmp_path: Path, name: str, writer) -> Path:
    write_folder(tmp_path / "imgs")
    path = tmp_path / "imgs" / "train" / "cat" / name
    writer(path)
    return path


def test_folder_non_image_file(tmp_path):
    path = _bad_folder(tmp_path, "notes.txt", lambda p: p.write_text("hello"))
    with pytest.raises(DataError, match=rf"{path}.*not a readable image"):
        _load(tmp_path / "imgs", tmp_path)


def test_folder_corrupt_jpeg(tmp_path):
    def writer(p):
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(buf, "JPEG")
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

    path = _bad_folder(tmp_path, "0099.jpg", writer)
    with pytest.raises(DataError, match=rf"{path}"):
        _load(tmp_path / "imgs", tmp_path)


def test_folder_wrong_size(tmp_path):
    path = _bad_folder(tmp_path, "big.png", lambda p: Image.new("RGB", (64, 48)).save(p))
    with pytest.raises(DataError, match=rf"{path}.*64x48"):
        _load(tmp_path / "imgs", tmp_path)


def _palette_red(p: Path) -> None:
    im = Image.new("P", (32, 32), 1)
    im.putpalette([0, 0, 0, 255, 0, 0])
    im.save(p)


@pytest.mark.parametrize(
    ("writer", "rgb"),
    [
        (lambda p: Image.new("L", (32, 32), 77).save(p), (77, 77, 77)),
        (lambda p: Image.new("RGBA", (32, 32), (10, 20, 30, 0)).save(p), (10, 20, 30)),
        (_palette_red, (255, 0, 0)),
    ],
)
def test_folder_other_modes_converted(tmp_path, writer, rgb):
    """Grey, alpha and palette images join an RGB set as RGB (they were refused before)."""
    path = _bad_folder(tmp_path, "m.png", writer)
    raw = _load(tmp_path / "imgs", tmp_path)
    assert raw.image_shape.channels == 3 and raw.x_train.shape[1] == 3072
    i = [k for k, (c, _) in enumerate(_train_names(tmp_path / "imgs")) if c == path.name]
    assert len(i) == 1
    np.testing.assert_array_equal(to_hwc(raw.x_train)[i[0]], np.broadcast_to(rgb, (32, 32, 3)))


def _train_names(root: Path) -> list[tuple[str, str]]:
    """(file name, class) of the training images, in load order."""
    return [
        (f.name, c.name) for c in sorted((root / "train").iterdir()) for f in sorted(c.iterdir())
    ]


def test_folder_classes_differ(tmp_path):
    write_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "test" / "dog").rename(tmp_path / "imgs" / "test" / "horse")
    with pytest.raises(DataError, match=r"only in train: \['dog'\].*only in test: \['horse'\]"):
        _load(tmp_path / "imgs", tmp_path)


def test_folder_empty_class(tmp_path):
    write_folder(tmp_path / "imgs")
    d = tmp_path / "imgs" / "test" / "cat"
    for f in d.iterdir():
        f.unlink()
    with pytest.raises(DataError, match=rf"{d} is empty"):
        _load(tmp_path / "imgs", tmp_path)


def test_folder_empty_split_and_missing_split(tmp_path):
    root = tmp_path / "imgs"
    (root / "train").mkdir(parents=True)
    (root / "test" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"{root / 'train'} has no class sub-folders"):
        _load(root, tmp_path)
    (root / "train").rmdir()
    with pytest.raises(DataError, match=r"no train/ sub-folder"):
        _load(root, tmp_path)


def test_missing_and_empty_dir(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'nope'} does not exist"):
        _load(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*it is empty.*cifar-10-batches-py"):
        _load(tmp_path / "empty", tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cifar-10-python.tar.gz").write_bytes(b"x")
    with pytest.raises(DataError, match=r"extract it first"):
        _load(tmp_path / "other", tmp_path)


def test_locate_data_env(tmp_path, monkeypatch):
    write_bin(tmp_path / "envdata" / "cifar-10-batches-bin")
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "envdata"))
    assert locate_data(None) == (tmp_path / "envdata").resolve()
    raw = load_cifar10(cache_dir=tmp_path / "c", progress=False)
    assert raw.x_train.shape == (sum(PER_BATCH), 3072)
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="MLPLAB_DATA"):
        locate_data(None)


# ----------------------------------------------------------------------- cache


def _entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if (p / "manifest.json").exists()]


def test_cache_hit_does_not_decode(tmp_path, monkeypatch):
    *_, classes = write_folder(tmp_path / "imgs")
    first = _load(tmp_path / "imgs", tmp_path)
    (entry,) = _entries(tmp_path / "cache")
    assert sorted(p.name for p in entry.iterdir()) == [
        "manifest.json",
        "x_test.npy",
        "x_train.npy",
        "y_test.npy",
        "y_train.npy",
    ]

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_mod, "decode_files", boom)
    second = _load(tmp_path / "imgs", tmp_path)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    assert second.classes == classes and second.source == first.source
    assert second.train_batch is None
    assert not second.x_train.flags.writeable  # served from a read-only memory map
    # touching a file changes the key: decoded again
    f = tmp_path / "imgs" / "test" / "dog" / "0000.png"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        _load(tmp_path / "imgs", tmp_path)


def test_cache_official_formats(tmp_path, monkeypatch):
    x, _, _, _, tb = write_bin(tmp_path / "cifar-10-batches-bin")
    _load(tmp_path / "cifar-10-batches-bin", tmp_path)

    def boom(*a, **k):
        raise AssertionError("read again")

    monkeypatch.setattr(cifar_mod, "read_binary_batches", boom)
    raw = _load(tmp_path / "cifar-10-batches-bin", tmp_path)
    np.testing.assert_array_equal(raw.x_train, x)
    np.testing.assert_array_equal(raw.train_batch, tb)
    assert raw.train_batch.dtype == np.int8


@pytest.mark.parametrize("damage", ["truncate", "garbage_manifest", "no_manifest", "drop_file"])
def test_cache_corrupt_entry_rebuilt(tmp_path, monkeypatch, damage):
    x, *_ = write_folder(tmp_path / "imgs")
    _load(tmp_path / "imgs", tmp_path)
    (entry,) = _entries(tmp_path / "cache")
    if damage == "truncate":
        f = entry / "x_train.npy"
        f.write_bytes(f.read_bytes()[:-10])
    elif damage == "garbage_manifest":
        (entry / "manifest.json").write_text("{not json")
    elif damage == "no_manifest":
        (entry / "manifest.json").unlink()
    else:
        (entry / "y_test.npy").unlink()
    calls = []
    real = folder_mod.decode_files
    monkeypatch.setattr(
        folder_mod, "decode_files", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = _load(tmp_path / "imgs", tmp_path)
    assert calls, "corrupt entry was not rebuilt"
    np.testing.assert_array_equal(raw.x_train, x)
    if damage != "no_manifest":  # an incomplete entry is rebuilt silently
        assert any(issubclass(w.category, CacheWarning) for w in caught)
    assert cache_mod.load_entry(tmp_path / "cache", entry.name) is not None
    calls.clear()
    _load(tmp_path / "imgs", tmp_path)
    assert not calls


def test_cache_unwritable_warns(tmp_path):
    x, *_ = write_folder(tmp_path / "imgs")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with pytest.warns(CacheWarning, match="continuing without cache"):
        raw = load_cifar10(tmp_path / "imgs", cache_dir=blocker / "cache", progress=False)
    np.testing.assert_array_equal(raw.x_train, x)


def test_no_pickle_in_cache(tmp_path):
    write_py(tmp_path / "cifar-10-batches-py")
    _load(tmp_path / "cifar-10-batches-py", tmp_path)
    (entry,) = _entries(tmp_path / "cache")
    for f in entry.glob("*.npy"):
        np.load(f, allow_pickle=False)  # would raise for object arrays


# -------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (directory, base URL)."""
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(www))
    )
    thread = threading.Thread(target=partial(server.serve_forever, poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tarball(tmp_path: Path, www: Path) -> tuple[str, tuple]:
    expected = write_py(tmp_path / "src" / "cifar-10-batches-py", seed=5)
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return hashlib.md5(archive.read_bytes()).hexdigest(), expected


def test_download_verifies_and_loads(tmp_path, monkeypatch, http_root):
    www, base = http_root
    md5, (x, _, _, yt, tb) = _tarball(tmp_path, www)
    monkeypatch.setattr(cifar_mod, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar_mod, "CIFAR10_MD5", md5)
    cache = tmp_path / "dl"
    raw = load_cifar10(None, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(raw.x_train, x)
    np.testing.assert_array_equal(raw.y_test, yt)
    np.testing.assert_array_equal(raw.train_batch, tb)
    assert (cache / "cifar-10-batches-py" / "data_batch_1").is_file()
    # a verified extraction is reused without the network
    (www / "cifar-10-python.tar.gz").unlink()
    assert locate_data(None, cache_dir=cache) == cache / "cifar-10-batches-py"
    raw2 = load_cifar10(None, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(raw2.x_train, x)


def test_download_wrong_md5(tmp_path, monkeypatch, http_root):
    www, base = http_root
    _tarball(tmp_path, www)
    monkeypatch.setattr(cifar_mod, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar_mod, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(DataError, match=r"MD5"):
        load_cifar10(None, cache_dir=tmp_path / "dl", progress=False)
    assert not (tmp_path / "dl" / "cifar-10-batches-py").exists()


def test_download_unreachable(tmp_path, monkeypatch, http_root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cifar_mod, "CIFAR10_URL", f"http://127.0.0.1:{port}/c.tar.gz")
    with pytest.raises(DataError, match=r"--data DIR.*MLPLAB_DATA"):
        load_cifar10(None, cache_dir=tmp_path / "dl", progress=False)


def test_download_404(tmp_path, monkeypatch, http_root):
    _www, base = http_root
    monkeypatch.setattr(cifar_mod, "CIFAR10_URL", f"{base}/missing.tar.gz")
    with pytest.raises(DataError, match=r"cannot download"):
        load_cifar10(None, cache_dir=tmp_path / "dl", progress=False)
