"""Any small image or array data set: image folders of any size and depth,
a held-out test part, ``.npz`` arrays read as untrusted files, float features in the splits.

Everything is written to ``tmp_path``; images are a few pixels wide.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlplab.data import RawDataset, load_cifar10, load_data, locate_data, make_splits, to_hwc
from mlplab.data import folder as folder_mod
from mlplab.data.cache import cache_key
from mlplab.data.cifar10 import FOLDER_FORMAT
from mlplab.data.folder import load_pil
from mlplab.data.holdout import held_out_count
from mlplab.errors import ConfigError, DataError
from mlplab.images import ImageShape
from mlplab.transform.standardize import transform_pixels


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPLAB_DATA", raising=False)
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "default-cache"))


def _load(data, tmp_path: Path, **kw) -> RawDataset:
    return load_data(data, cache_dir=tmp_path / "cache", progress=False, **kw)


def _grey_folder(root: Path, side=24, n_train=(4, 3, 5), n_test=(2, 2, 1), seed=0):
    """Classes b, a, c (loaded sorted: a, b, c) of grey PNGs; returns the expected rows."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, counts in (("train", n_train), ("test", n_test)):
        rows, labels = [], []
        for k, (name, n) in enumerate(zip("abc", counts, strict=True)):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                px = rng.integers(0, 256, (side, side), np.uint8)
                Image.fromarray(px).save(d / f"{i:03d}.png")
                rows.append(px.ravel())
                labels.append(k)
        out[split] = (np.stack(rows), np.array(labels))
    return out


def _save(path: Path, im: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


# -------------------------------------------------------------------- image folders


def test_grey_folder_of_any_size_loads_as_one_channel(tmp_path):
    want = _grey_folder(tmp_path / "g")
    raw = _load(tmp_path / "g", tmp_path)
    assert raw.image_shape == ImageShape(24, 24, 1) and raw.scale == 255.0
    assert raw.classes == ("a", "b", "c")
    assert raw.x_train.shape == (12, 576) and raw.x_train.dtype == np.uint8
    np.testing.assert_array_equal(raw.x_train, want["train"][0])
    np.testing.assert_array_equal(raw.y_train, want["train"][1])
    np.testing.assert_array_equal(raw.x_test, want["test"][0])
    np.testing.assert_array_equal(raw.y_test, want["test"][1])
    assert "held out" not in raw.source


def test_one_colour_image_makes_the_set_rgb_and_grey_images_are_expanded(tmp_path):
    want = _grey_folder(tmp_path / "g", side=8)
    colour = np.random.default_rng(5).integers(0, 256, (8, 8, 3), np.uint8)
    _save(tmp_path / "g" / "test" / "c" / "zz.png", Image.fromarray(colour))
    raw = _load(tmp_path / "g", tmp_path)
    assert raw.image_shape == ImageShape(8, 8, 3)
    planes = raw.image_shape.planes(raw.x_train)
    for c in range(3):  # every grey training image: R = G = B = its grey values
        np.testing.assert_array_equal(planes[:, c].reshape(12, 64), want["train"][0])
    np.testing.assert_array_equal(to_hwc(raw.x_test, raw.image_shape)[-1], colour)


@pytest.mark.parametrize("parallel", [False, True])
def test_grey_chunks_decoded_before_a_colour_chunk_are_expanded(tmp_path, monkeypatch, parallel):
    want = _grey_folder(tmp_path / "g", side=4, n_train=(3, 3, 3))
    colour = _save(tmp_path / "g" / "train" / "c" / "zz.png", Image.new("RGB", (4, 4), (1, 2, 3)))
    monkeypatch.setattr(folder_mod, "CHUNK_FILES", 2)  # grey chunks first, colour last
    if parallel:
        monkeypatch.setattr(folder_mod, "PARALLEL_MIN_FILES", 1)
    x, shape = folder_mod.decode_files(
        [str(p) for p in sorted((tmp_path / "g" / "train").rglob("*.png"))]
    )
    assert shape == ImageShape(4, 4, 3) and x.shape == (10, 48)
    np.testing.assert_array_equal(x[:9], np.tile(want["train"][0], (1, 3)))
    np.testing.assert_array_equal(to_hwc(x, shape)[9], np.asarray(Image.open(colour)))


def test_sixteen_bit_grey_is_scaled_not_clipped_to_white(tmp_path):
    v = np.array([[0, 128, 257, 32767], [32768, 32896, 65407, 65535]], np.uint16)
    path = _save(tmp_path / "d" / "train" / "a" / "x.png", Image.fromarray(v))
    _save(tmp_path / "d" / "test" / "a" / "y.png", Image.fromarray(np.full((2, 4), 32896, "u2")))
    assert Image.open(path).mode == "I;16"
    want = np.rint(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(load_pil(path)), want)
    raw = _load(tmp_path / "d", tmp_path)
    np.testing.assert_array_equal(raw.x_train[0], want.ravel())
    assert raw.x_test[0, 0] == 128  # mid grey, not 255
    big = Image.fromarray(np.array([[70000, 1]], np.int32))  # mode I beyond 16 bits
    with pytest.raises(DataError, match=r"big\.tif.*0\.\.65535"):
        load_pil(_save(tmp_path / "big.tif", big))


def test_float_image_is_refused_with_one_error_and_no_warning(tmp_path, capsys):
    want = _grey_folder(tmp_path / "d", side=4)
    assert want
    bad = _save(tmp_path / "d" / "train" / "b" / "f.tif", Image.fromarray(np.ones((4, 4), "f4")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=rf"{bad}: floating-point image") as e:
            _load(tmp_path / "d", tmp_path)
    assert not caught and "\n" not in str(e.value)
    assert capsys.readouterr().err == ""


def test_pillow_warnings_while_reading_are_not_printed(tmp_path, monkeypatch):
    from mlplab.data import pixels

    real_open = Image.open

    def chatty_open(*a, **k):  # as a plugin does on odd metadata (TIFF tags, EXIF)
        warnings.warn("Possibly corrupt EXIF data", UserWarning, stacklevel=1)
        return real_open(*a, **k)

    monkeypatch.setattr(pixels.Image, "open", chatty_open)
    good = _save(tmp_path / "ok.png", Image.new("L", (2, 2), 3))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_pil(good).getpixel((0, 0)) == 3
        with pytest.raises(DataError, match=r"bad\.png"):
            load_pil(bad)
    assert not caught


def test_decompression_bomb_warning_becomes_the_error(tmp_path, monkeypatch):
    path = _save(tmp_path / "x.png", Image.new("L", (12, 12)))  # 144 px: between 1x and 2x
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=r"x\.png: not a readable image"):
            load_pil(path)
    assert not caught


@pytest.mark.parametrize(
    ("make", "mode", "pixel"),
    [
        (lambda: Image.new("RGBA", (3, 2), (10, 20, 30, 0)), "RGB", (10, 20, 30)),
        (lambda: Image.new("LA", (3, 2), (99, 5)), "L", 99),
        (lambda: Image.new("1", (3, 2), 1), "L", 255),
        (lambda: _palette([0, 0, 0, 200, 10, 0], 1), "RGB", (200, 10, 0)),
        (lambda: _palette([0, 0, 0, 77, 77, 77, 255, 0, 0], 1), "L", 77),  # red unused
    ],
)
def test_load_pil_converts_by_real_depth(tmp_path, make, mode, pixel):
    path = _save(tmp_path / "i.png", make())
    im = load_pil(path)
    assert im.mode == mode and im.getpixel((1, 1)) == pixel
    assert load_pil(path, 3).mode == "RGB" and load_pil(path, 1).mode == "L"
    with pytest.raises(DataError, match=r"nope\.png"):
        load_pil(tmp_path / "nope.png")


def _palette(colours: list[int], index: int) -> Image.Image:
    im = Image.new("P", (3, 2), index)
    im.putpalette(colours)
    return im


def test_rgba_and_palette_images_in_a_data_set(tmp_path):
    _save(tmp_path / "d" / "train" / "a" / "0.png", Image.new("RGBA", (2, 2), (1, 2, 3, 4)))
    _save(tmp_path / "d" / "train" / "b" / "0.png", _palette([9, 9, 9], 0).resize((2, 2)))
    _save(tmp_path / "d" / "test" / "a" / "0.png", Image.new("L", (2, 2), 50))
    _save(tmp_path / "d" / "test" / "b" / "0.png", Image.new("L", (2, 2), 60))
    raw = _load(tmp_path / "d", tmp_path)
    assert raw.image_shape == ImageShape(2, 2, 3)
    np.testing.assert_array_equal(
        to_hwc(raw.x_train, raw.image_shape)[:, 0, 0], [[1, 2, 3], [9] * 3]
    )
    np.testing.assert_array_equal(
        to_hwc(raw.x_test, raw.image_shape)[:, 1, 1], [[50] * 3, [60] * 3]
    )


def test_two_sizes_are_one_error_naming_both_files(tmp_path):
    _grey_folder(tmp_path / "d", side=6)
    odd = _save(tmp_path / "d" / "test" / "b" / "wide.png", Image.new("L", (9, 6)))
    with pytest.raises(DataError) as e:
        _load(tmp_path / "d", tmp_path)
    msg = str(e.value)
    first = tmp_path / "d" / "train" / "a" / "000.png"
    assert f"{first} is 6x6" in msg and f"{odd} is 9x6" in msg and "--set size=" in msg


def test_size_resizes_every_image_and_the_cache_keys_on_it(tmp_path, monkeypatch):
    _grey_folder(tmp_path / "d", side=6)
    paths = sorted((tmp_path / "d" / "train").rglob("*.png"))
    _save(paths[0], Image.new("RGB", (10, 7), (200, 100, 0)))  # another size, and colour
    raw = _load(tmp_path / "d", tmp_path, size=(5, 4))
    assert raw.image_shape == ImageShape(5, 4, 3) and raw.x_train.shape == (12, 60)
    for i in (0, 5):
        ref = Image.open(paths[i]).convert("RGB").resize((4, 5), Image.Resampling.LANCZOS)
        np.testing.assert_array_equal(to_hwc(raw.x_train, raw.image_shape)[i], np.asarray(ref))

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_mod, "decode_files", boom)
    again = _load(tmp_path / "d", tmp_path, size=[5, 4])  # a cache hit
    assert again.image_shape == raw.image_shape and not again.x_train.flags.writeable
    np.testing.assert_array_equal(again.x_train, raw.x_train)
    np.testing.assert_array_equal(again.x_test, raw.x_test)
    with pytest.raises(AssertionError, match="decoded again"):  # another size: another key
        _load(tmp_path / "d", tmp_path, size=(4, 4))
    with pytest.raises(ConfigError, match="height"):
        _load(tmp_path / "d", tmp_path, size=(0, 4))


def test_cifar_folder_keeps_its_cache_key(tmp_path):
    for split in ("train", "test"):
        _save(tmp_path / "d" / split / "cat" / "0.png", Image.new("RGB", (32, 32), (1, 2, 3)))
    raw = _load(tmp_path / "d", tmp_path)
    assert raw.image_shape == ImageShape(32, 32, 3)
    index = folder_mod.scan_image_folder(tmp_path / "d")
    key = cache_key(FOLDER_FORMAT, tmp_path / "d", index.stats)
    manifest = json.loads((tmp_path / "cache" / key / "manifest.json").read_text())
    assert manifest["meta"]["image_shape"] == [32, 32, 3]


def test_train_only_folder_holds_out_a_fixed_fifth_of_every_class(tmp_path):
    counts = {"a": 10, "b": 7, "c": 2, "d": 1, "e": 13}
    for name, n in counts.items():
        for i in range(n):
            _save(tmp_path / "d" / "train" / name / f"{i:02d}.png", Image.new("L", (3, 3), i))
    raw = _load(tmp_path / "d", tmp_path)
    assert "held out" in raw.source and "20 %" in raw.source
    per_class = np.bincount(raw.y_test, minlength=5).tolist()
    assert per_class == [2, 1, 1, 0, 3] == [held_out_count(n) for n in counts.values()]
    assert np.bincount(raw.y_train).tolist() == [8, 6, 1, 1, 10]
    # every image exactly once; the same test part in another cache, with a recipe seed set
    key = [
        x[:, 0].astype(int) * 8 + y
        for x, y in ((raw.x_train, raw.y_train), (raw.x_test, raw.y_test))
    ]
    seen = np.concatenate(key)
    assert len(set(seen.tolist())) == sum(counts.values())
    other = load_data(tmp_path / "d", cache_dir=tmp_path / "other", progress=False)
    np.testing.assert_array_equal(other.x_test, raw.x_test)
    np.testing.assert_array_equal(other.y_test, raw.y_test)
    # not simply the first files of each class
    assert raw.x_test[raw.y_test == 4, 0].tolist() != [0, 1, 2]


def test_train_only_folder_with_single_images_has_no_test_part(tmp_path):
    for name in "ab":
        _save(tmp_path / "d" / "train" / name / "0.png", Image.new("L", (3, 3)))
    with pytest.raises(DataError, match="fewer than 2 samples"):
        _load(tmp_path / "d", tmp_path)


# ---------------------------------------------------------------------------- .npz


def test_npz_flat_float_features(tmp_path):
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(30, 5)).astype(np.float32), rng.normal(size=(6, 5))
    y, yt = np.arange(30) % 3, np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "f.npz", x=x, y=y, x_test=xt, y_test=yt)
    raw = _load(tmp_path / "f.npz", tmp_path)
    assert raw.image_shape is None and raw.scale == 1.0 and raw.x_train.dtype == np.float64
    np.testing.assert_array_equal(raw.x_train, x.astype(np.float64))
    np.testing.assert_array_equal(raw.x_test, xt)
    assert raw.classes == ("0", "1", "2") and raw.y_test.dtype == np.int64
    assert locate_data(tmp_path / "f.npz") == (tmp_path / "f.npz").resolve()
    assert load_cifar10(tmp_path / "f.npz", progress=False).x_train.shape == (30, 5)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_npz_images_become_plane_order_rows(tmp_path, channels):
    rng = np.random.default_rng(1)
    shape = (12, 5, 4) if channels is None else (12, 5, 4, channels)
    x = rng.integers(0, 256, shape, np.uint8)
    y = np.arange(12) % 2
    np.savez_compressed(tmp_path / "i.npz", x=x, y=y, x_test=x[:3], y_test=y[:3])
    raw = _load(tmp_path / "i.npz", tmp_path)
    c = channels or 1
    assert raw.image_shape == ImageShape(5, 4, c) and raw.scale == 255.0
    planes = x.reshape(12, 5, 4, c).transpose(0, 3, 1, 2).reshape(12, 20 * c)
    np.testing.assert_array_equal(raw.x_train, planes)
    np.testing.assert_array_equal(raw.x_test, planes[:3])
    assert "held out" not in raw.source
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32) / 255, y=y)  # float images
    raw = _load(tmp_path / "f.npz", tmp_path)
    assert raw.image_shape == ImageShape(5, 4, c) and raw.scale == 1.0
    assert len(raw.x_test) == 2 and "held out" in raw.source  # one of each class of 6


def test_npz_string_labels_and_classes(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(8, 3)
    y = np.array(["dog", "cat", "emu", "cat", "dog", "emu", "cat", "dog"])
    np.savez(tmp_path / "s.npz", x=x, y=y, x_test=x[:2], y_test=np.array(["emu", "cat"]))
    raw = _load(tmp_path / "s.npz", tmp_path)
    assert raw.classes == ("cat", "dog", "emu")
    assert raw.y_train.tolist() == [1, 0, 2, 0, 1, 2, 0, 1] and raw.y_test.tolist() == [2, 0]
    order = np.array(["emu", "dog", "cat"])
    np.savez(tmp_path / "c.npz", x=x, y=y, classes=order)
    raw = _load(tmp_path / "c.npz", tmp_path)
    assert raw.classes == ("emu", "dog", "cat") and "held out" in raw.source
    assert [raw.classes[k] for k in raw.y_train] == [
        s for i, s in enumerate(y) if i in _kept(raw, x)
    ]
    np.savez(tmp_path / "bad.npz", x=x, y=y, classes=np.array(["dog", "cat"]))
    with pytest.raises(DataError, match="'emu', not among the classes"):
        _load(tmp_path / "bad.npz", tmp_path)
    np.savez(tmp_path / "range.npz", x=x, y=np.arange(8), classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"label 7 out of range 0\.\.1"):
        _load(tmp_path / "range.npz", tmp_path)


def _kept(raw: RawDataset, x: np.ndarray) -> list[int]:
    return [int(np.flatnonzero((x == r).all(axis=1))[0]) for r in raw.x_train]


def test_npz_size_resizes_uint8_images_only(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (10, 6, 8, 3), np.uint8)
    np.savez(tmp_path / "i.npz", x=x, y=np.arange(10) % 2, x_test=x[:2], y_test=[0, 1])
    raw = _load(tmp_path / "i.npz", tmp_path, size=(3, 4))
    ref = np.asarray(Image.fromarray(x[1]).resize((4, 3), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(to_hwc(raw.x_train, raw.image_shape)[1], ref)
    np.savez(tmp_path / "f.npz", x=x.astype(np.float32), y=np.arange(10) % 2)
    assert _load(tmp_path / "f.npz", tmp_path, size=(6, 8)).image_shape == ImageShape(6, 8, 3)
    with pytest.raises(DataError, match="float images cannot be resized"):
        _load(tmp_path / "f.npz", tmp_path, size=(3, 4))


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"x": np.array([[1.0, np.nan]] * 4), "y": [0, 1, 0, 1]}, r"x holds NaN"),
        (
            {"x": np.ones((4, 2)), "y": [0, 1, 0, 1], "x_test": [[np.inf, 0]], "y_test": [0]},
            r"x_test holds NaN or infinite values",
        ),
        ({"x": np.ones((4, 2)), "y": [0, 1, 0]}, r"x holds 4 samples but y 3"),
        ({"x": np.ones((4, 2)), "y": [0, -1, 0, 1]}, r"label -1 out of range"),
        ({"x": np.ones((4, 2, 2, 2)), "y": [0, 1, 0, 1]}, r"channels"),
        ({"x": np.ones((4, 2)), "y": [0, 1, 0, 1], "extra": [1]}, r"unknown member 'extra\.npy'"),
        ({"x": np.ones((4, 2)), "x_test": np.ones((1, 2)), "y": [0, 1, 0, 1]}, r"x_test with"),
        (
            {"x": np.ones((4, 2)), "y": [0, 1, 0, 1], "x_test": np.ones((1, 3)), "y_test": [0]},
            r"match",
        ),
        ({"x": np.ones((4, 2), complex), "y": [0, 1, 0, 1]}, r"unsupported dtype"),
    ],
)
def test_npz_contents_are_checked(tmp_path, members, match):
    np.savez(tmp_path / "b.npz", **members)
    with pytest.raises(DataError, match=match):
        _load(tmp_path / "b.npz", tmp_path)


def test_npz_pickled_objects_are_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object), y=[0, 1])
    with pytest.raises(DataError, match=r"member x holds Python objects"):
        _load(tmp_path / "o.npz", tmp_path)


def _declare(path: Path, member: str, size: int) -> None:
    """Rewrite the uncompressed size of ``member`` in the zip's central directory."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        n = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + n] == name:
            data[at + 24 : at + 28] = size.to_bytes(4, "little")
            break
        at += 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compressed", [True, False])
def test_npz_member_declaring_a_huge_size_is_refused_unread(tmp_path, monkeypatch, compressed):
    path = tmp_path / "z.npz"
    (np.savez_compressed if compressed else np.savez)(path, x=np.zeros((4, 2)), y=[0, 1, 0, 1])
    _declare(path, "x.npy", 0xFFFF0000)  # ~4 GiB from a file of a few hundred bytes
    assert path.stat().st_size < 2000
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k)
    )
    with pytest.raises(
        DataError, match=r"member x declares" if compressed else r"inconsistent size"
    ):
        _load(path, tmp_path)
    assert not opened


def test_npz_total_size_limit(tmp_path, monkeypatch):
    from mlplab.data import arrays

    np.savez(tmp_path / "t.npz", x=np.zeros((40, 20)), y=np.zeros(40, int))
    monkeypatch.setattr(arrays, "MAX_TOTAL_BYTES", 6000)
    with pytest.raises(DataError, match=r"more than the 6000"):
        _load(tmp_path / "t.npz", tmp_path)


def test_npz_header_not_matching_its_data_is_refused(tmp_path):
    path = tmp_path / "h.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("y.npy", _npy([0, 1]))
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000000, 100), }"
        header += b" " * (117 - len(header)) + b"\n"
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    with pytest.raises(DataError, match=r"declares shape \(100000000, 100\)"):
        _load(path, tmp_path)


def _npy(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(a))
    return buf.getvalue()


def test_npz_paths_that_are_not_regular_files(tmp_path, monkeypatch):
    (tmp_path / "x.npz").mkdir()
    with pytest.raises(DataError, match=r"x\.npz is a directory"):
        _load(tmp_path / "x.npz", tmp_path)
    fifo = tmp_path / "p.npz"
    os.mkfifo(fifo)
    result: list[BaseException | None] = []

    def target(read=lambda: _load(fifo, tmp_path)):
        try:
            read()
            result.append(None)
        except BaseException as exc:  # handed to the main thread
            result.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "reading a FIFO hung"
    assert isinstance(result[0], DataError) and "FIFO" in str(result[0])
    # replaced by a FIFO between the look and the open: opened without blocking, refused
    from mlplab.data import arrays

    monkeypatch.setattr(arrays, "check_regular", lambda path: None)
    result.clear()
    t = threading.Thread(target=target, args=(lambda: arrays.read_npz(fifo),), daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "opening a FIFO hung"
    assert isinstance(result[0], DataError) and "FIFO" in str(result[0])
    monkeypatch.undo()
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"not a directory or an \.npz file"):
        _load(tmp_path / "notes.txt", tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz"):
        _load(tmp_path / "junk.npz", tmp_path)


# ---------------------------------------------------------------------- the splits


def test_float_features_are_standardised_in_float64(tmp_path):
    rng = np.random.default_rng(3)
    x = 1e6 + rng.normal(size=(60, 4))  # float32 arithmetic would lose these digits
    x[:, 2] = 7.0  # a constant column: std 1, values 0
    xt = 1e6 + rng.normal(size=(5, 4))
    raw = RawDataset(x, np.arange(60) % 2, xt, np.arange(5) % 2, ("a", "b"), None, "t", None)
    sp = make_splits(raw, "40/10", np.random.default_rng(0), dtype=np.float32)
    perm = np.random.default_rng(0).permutation(60)
    tr, va = perm[:40], perm[40:50]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    std[std == 0] = 1.0
    assert sp.scale == 1.0 and sp.image_shape is None and sp.x_train.dtype == np.float32
    np.testing.assert_allclose(sp.mean, mean, rtol=1e-15)
    np.testing.assert_allclose(sp.std, std, rtol=1e-12)
    for got, ref in ((sp.x_train, x[tr]), (sp.x_val, x[va]), (sp.x_test, xt)):
        np.testing.assert_allclose(got, ((ref - mean) / std).astype(np.float32), atol=1e-6)
    assert np.abs(sp.x_train.mean(axis=0)).max() < 1e-6 and not sp.x_train[:, 2].any()
    np.testing.assert_array_equal(
        transform_pixels(xt, sp.mean, sp.std, None, np.float32, scale=1.0), sp.x_test
    )


def test_grey_splits_keep_their_shape_and_prepared_meta(tmp_path):
    from mlplab.config import load_recipe
    from mlplab.train.prepared import load_split, prepare_splits

    _grey_folder(tmp_path / "g", side=5, n_train=(9, 9, 9))
    raw = _load(tmp_path / "g", tmp_path)
    sp = make_splits(raw, "20/5", np.random.default_rng(0))
    assert sp.image_shape == ImageShape(5, 5, 1) and sp.x_train.shape == (20, 25)
    cfg = load_recipe("bonus/best", {"split": "20/5", "zca_eps": "0"})
    prepare_splits(raw, [cfg], tmp_path / "prep")
    back, _ = load_split(tmp_path / "prep", cfg)
    assert back.image_shape == ImageShape(5, 5, 1) and back.scale == 255.0
    np.testing.assert_array_equal(back.x_train, sp.x_train)
    with pytest.raises(ConfigError, match="5x5 grayscale"):
        to_hwc(np.zeros((1, 24)), sp.image_shape)


def test_a_size_equal_to_the_images_own_reuses_their_cache_entry(tmp_path):
    """``evaluate`` loads data at the model's size: a folder already of that size is served
    from the entry of a plain load, not decoded and cached a second time."""
    from mlplab.data import load_data

    root = tmp_path / "imgs"
    for part in ("train", "test"):
        for c in ("a", "b"):
            (root / part / c).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (10, 6), 40 * i).save(root / part / c / f"{i}.png")
    cache = tmp_path / "cache"
    plain = load_data(root, cache_dir=cache, progress=False)
    entries = sorted(p.name for p in cache.iterdir())
    same = load_data(root, size=(6, 10), cache_dir=cache, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == entries  # no second entry
    np.testing.assert_array_equal(same.x_train, plain.x_train)
    other = load_data(root, size=(5, 5), cache_dir=cache, progress=False)
    assert other.image_shape.to_list() == [5, 5, 1] and len(list(cache.iterdir())) > len(entries)
