"""Every tool follows the model's shape: model files store the image shape
and the scale; predict, evaluate, weights, misclassified and export work at that shape; the
figures draw names literally."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.text
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlplab.cli import cli
from mlplab.errors import ConfigError, ModelFileError
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.nn.network import Network
from mlplab.nn.serialize import (
    SHAPE_VERSION,
    load_model_files,
    load_network,
    save_model,
    save_network,
)
from mlplab.report import plots

GRAY = ImageShape(24, 24, 1)
CLASSES = ("a", "b", "c")


def _stats(rng: np.random.Generator, d: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(0.3, 0.7, d), rng.uniform(0.1, 0.3, d)


def _model(path: Path, shape: ImageShape | None = GRAY, *, d: int = 0, flip=False, hidden=(8,)):
    """A random network for ``shape`` (or ``d`` flat features), saved at ``path``."""
    rng = np.random.default_rng(0)
    d = shape.size if shape is not None else d
    net = Network.build(d, list(hidden), len(CLASSES), rng=rng, init="he")
    scale = 255.0 if shape is not None else 1.0
    save_network(
        path, net, *_stats(rng, d), CLASSES, flip_average=flip, image_shape=shape, scale=scale
    )
    return load_network(path)


def _by_hand(m, x: np.ndarray) -> np.ndarray:
    """The probabilities of raw rows ``x``, computed here from the stored statistics."""
    z = ((np.asarray(x, np.float64) / m.scale - m.mean) / m.std).astype(np.float32)
    return m.network.predict_proba(z)


def _write_as_before(path: Path, d: int, flip: bool = False) -> Network:
    """A model file exactly as mlplab wrote it before shapes were stored."""
    net = Network.build(d, [4], 10, rng=np.random.default_rng(1))
    arrays = {f"net/{k}": v for k, v in net.state().items()}
    arrays |= {"preprocess/mean": np.full(d, 0.5), "preprocess/std": np.full(d, 0.25)}
    meta = {"dtype": "float32", "layers": net.spec(), "classes": list("abcdefghij")}
    save_model(path, {**meta, "flip_average": flip}, arrays, version=2 if flip else 1)
    return net


# -- model files ---------------------------------------------------------------------------------
def test_a_24x24_grayscale_model_keeps_its_shape(tmp_path):
    m = _model(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["image_shape"] == [24, 24, 1] and meta["scale"] == 255.0
    assert meta["format_version"] == SHAPE_VERSION == 3
    assert m.image_shape == GRAY and m.scale == 255.0
    x = np.random.default_rng(2).integers(0, 256, (7, 576)).astype(np.uint8)
    np.testing.assert_allclose(m.predict_proba(x), _by_hand(m, x), rtol=1e-5)


def test_flat_features_keep_their_scale(tmp_path):
    m = _model(tmp_path / "m", None, d=64)
    meta, _ = load_model_files(tmp_path / "m")
    assert meta["image_shape"] is None and meta["scale"] == 1.0 and meta["format_version"] == 3
    assert m.image_shape is None and m.scale == 1.0
    x = np.random.default_rng(3).normal(0.5, 0.2, (9, 64))
    np.testing.assert_allclose(m.predict_proba(x), _by_hand(m, x), rtol=1e-5)


def test_format_versions_rise_only_for_what_older_readers_would_misread(tmp_path, monkeypatch):
    import mlplab.nn.serialize as model_format

    rng = np.random.default_rng(0)
    cifar = Network.build(3072, [4], 10, rng=rng)
    flat = Network.build(64, [4], 10, rng=rng)
    classes = tuple("abcdefghij")
    save_network(tmp_path / "cifar", cifar, *_stats(rng, 3072), classes)
    save_network(tmp_path / "flip", cifar, *_stats(rng, 3072), classes, flip_average=True)
    save_network(tmp_path / "flat", flat, *_stats(rng, 64), classes, image_shape=None)
    flat_3072 = {"image_shape": None}
    save_network(tmp_path / "flat3072", cifar, *_stats(rng, 3072), classes, **flat_3072)
    save_network(tmp_path / "flat1", flat, *_stats(rng, 64), classes, image_shape=None, scale=1)
    versions = {
        n: load_model_files(tmp_path / n)[0]["format_version"]
        for n in ("cifar", "flip", "flat", "flat3072", "flat1")
    }
    assert versions == {"cifar": 1, "flip": 2, "flat": 1, "flat3072": 3, "flat1": 3}
    monkeypatch.setattr(model_format, "MODEL_VERSION", 2)  # a reader from before the shapes
    assert load_network(tmp_path / "flip").flip_average
    for name in ("flat3072", "flat1"):
        with pytest.raises(ModelFileError, match="newer than this mlplab supports"):
            load_network(tmp_path / name)


@pytest.mark.parametrize("flip", [False, True])
def test_model_files_written_before_shapes_still_load(tmp_path, flip):
    net = _write_as_before(tmp_path / "old", 3072, flip)
    m = load_network(tmp_path / "old")
    assert m.image_shape == CIFAR10_SHAPE and m.scale == 255.0 and m.flip_average == flip
    x = np.random.default_rng(4).integers(0, 256, (5, 3072)).astype(np.uint8)
    z = ((x / 255.0 - 0.5) / 0.25).astype(np.float32)
    mirrored = z.reshape(5, 3, 32, 32)[..., ::-1].reshape(5, 3072)
    want = net.predict_proba(z)
    if flip:
        want = (want + net.predict_proba(mirrored)) / 2
    np.testing.assert_allclose(m.predict_proba(x), want, rtol=1e-5)
    _write_as_before(tmp_path / "old20", 20)
    m20 = load_network(tmp_path / "old20")
    assert m20.image_shape is None and m20.scale == 255.0


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"image_shape": [24, 24, 3]}, "have 1728 values, the network takes 576"),
        ({"image_shape": [32, 32, 3]}, "have 3072 values, the network takes 576"),
        ({"image_shape": [24, 24, 2]}, "invalid 'image_shape'.*1 or 3 channels"),
        ({"image_shape": "24x24"}, "invalid 'image_shape'"),
        ({"image_shape": None, "flip_average": True}, "flip averaging needs images"),
        ({"scale": 0}, "scale must be 255"),
        ({"scale": "255"}, "scale must be 255"),
        ({"scale": True}, "scale must be 255"),
        ({"scale": 1e-320}, "scale must be 255"),
        ({"classes": ["a", "a", "b"]}, "appears twice"),
    ],
)
def test_a_stored_shape_or_scale_that_does_not_fit_is_refused(tmp_path, change, pattern):
    _model(tmp_path / "m")
    meta, arrays = load_model_files(tmp_path / "m")
    save_model(tmp_path / "bad", {**meta, **change}, arrays, version=3)
    with pytest.raises(ModelFileError, match=pattern):
        load_network(tmp_path / "bad")


def test_save_refuses_a_shape_that_does_not_fit(tmp_path):
    net = Network.build(576, [4], 3, rng=np.random.default_rng(0))
    args = (tmp_path / "m", net, np.zeros(576), np.ones(576), CLASSES)
    with pytest.raises(ConfigError, match="1728 values, the network takes 576"):
        save_network(*args, image_shape=ImageShape(24, 24, 3))
    with pytest.raises(ConfigError, match="flip averaging needs images"):
        save_network(*args, image_shape=None, flip_average=True)
    with pytest.raises(ConfigError, match="scale must be 255"):
        save_network(*args, image_shape=GRAY, scale=-1.0)
    assert not (tmp_path / "m.json").exists()
    save_network(*args)  # the default: as older files are read (CIFAR-10's for 3072 inputs)
    assert load_network(tmp_path / "m").image_shape is None
    save_network(*args, image_shape=[24, 24, 1])  # a list is an image shape too
    assert load_network(tmp_path / "m").image_shape == GRAY


@pytest.mark.parametrize("shape", [GRAY, ImageShape(12, 20, 3)])
def test_flip_averaging_mirrors_in_the_models_own_shape(tmp_path, shape):
    m = _model(tmp_path / "m", shape, flip=True)
    n = 6
    x = np.random.default_rng(5).integers(0, 256, (n, shape.size)).astype(np.uint8)
    z = ((x / 255.0 - m.mean) / m.std).astype(np.float32)  # mirrored after standardising
    planes = z.reshape(n, shape.channels, shape.height, shape.width)
    mirrored = np.ascontiguousarray(planes[..., ::-1]).reshape(n, shape.size)
    want = (m.network.predict_proba(z) + m.network.predict_proba(mirrored)) / 2
    np.testing.assert_allclose(m.predict_proba(x), want, rtol=1e-5)
    assert not np.allclose(want, _by_hand(m, x), rtol=1e-3)  # the mirror changes something


# -- predict ------------------------------------------------------------------------------------
def _picture(seed: int, h: int = 24, w: int = 24, c: int = 1) -> np.ndarray:
    hwc = np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(np.uint8)
    return hwc[..., 0] if c == 1 else hwc


def test_read_image_converts_to_the_models_size_and_channels(tmp_path):
    from mlplab.train.inspect import read_image

    gray = _picture(0)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(read_image(tmp_path / "gray.png", GRAY), gray.reshape(-1))
    rgb = _picture(1, c=3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")  # colour to a grayscale model: luma
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(read_image(tmp_path / "rgb.png", GRAY), luma.reshape(-1))
    assert not np.array_equal(luma, rgb[..., 0])
    wide = gray.astype(np.uint16) * 257  # 16 bits: the same picture, to 8 bits exactly
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    assert np.array_equal(read_image(tmp_path / "wide.png", GRAY), gray.reshape(-1))
    # 72 wide, 48 high: the central 48x48 is cropped (dark top, light bottom), the white
    # margins left and right are cut away, then it is halved
    big = np.full((48, 72), 255, np.uint8)
    big[:24, 12:60], big[24:, 12:60] = 40, 200
    Image.fromarray(big).convert("RGB").save(tmp_path / "big.png")
    pic = read_image(tmp_path / "big.png", GRAY).reshape(24, 24)
    assert np.abs(pic[:9, 3:21].astype(int) - 40).max() <= 2, pic[:9]
    assert np.abs(pic[15:, 3:21].astype(int) - 200).max() <= 2, pic[15:]
    assert pic[:9, [0, -1]].max() < 100  # (Lanczos reaches a little past the crop's edge)
    row = read_image(tmp_path / "big.png", ImageShape(8, 8, 3))  # and to a colour model
    assert row.shape == (192,) and row.dtype == np.uint8


def test_predict_on_files_of_other_sizes_and_modes(tmp_path):
    m = _model(tmp_path / "m")
    gray = _picture(7)
    Image.fromarray(gray).save(tmp_path / "a.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "b16.png")
    Image.fromarray(gray).convert("RGB").resize((48, 48), Image.Resampling.NEAREST).save(
        tmp_path / "c.png"
    )
    files = [str(tmp_path / n) for n in ("a.png", "b16.png", "c.png")]
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "m"), *files, "--json", "--top", "3"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    want = _by_hand(m, gray.reshape(1, -1))[0]
    for row in rows[:2]:  # the 8- and the 16-bit file hold the same picture
        assert row["class"] == CLASSES[int(want.argmax())]
        np.testing.assert_allclose([p for _, p in row["top"]], np.sort(want)[::-1], rtol=1e-5)
    from mlplab.train.inspect import read_image  # the RGB 48x48 file: read at 24x24 grayscale

    want = _by_hand(m, read_image(tmp_path / "c.png", GRAY)[None])[0]
    np.testing.assert_allclose([p for _, p in rows[2]["top"]], np.sort(want)[::-1], rtol=1e-5)


def test_predict_refuses_flat_models_with_one_error(tmp_path):
    _model(tmp_path / "flat", None, d=64)
    Image.fromarray(_picture(0)).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "flat"), str(tmp_path / "a.png")])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: predicting image files needs a model of images; this one takes 64 flat features"
    ]


# -- evaluate, misclassified, weights -------------------------------------------------------------
def _folder(root: Path, channels: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``root/{train,test}/{a,b,c}/*.png`` of 24x24 pictures; the rows of each part."""
    parts = {}
    for part, n in (("train", 4), ("test", 5)):
        xs, ys = [], []
        for k, name in enumerate(CLASSES):
            (root / part / name).mkdir(parents=True)
            for i in range(n):
                pic = _picture(100 * k + 10 * i + (part == "test"), c=channels)
                Image.fromarray(pic).save(root / part / name / f"{i}.png")
                xs.append(GRAY.from_hwc(pic[None]) if channels == 1 else pic.transpose(2, 0, 1))
                ys.append(k)
        x = np.stack([np.asarray(v).reshape(-1) for v in xs])
        parts[part] = (x, np.array(ys))
    return parts


def test_evaluate_a_grayscale_model_on_a_24x24_grayscale_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    m = _model(tmp_path / "m", hidden=(16,))
    x, y = _folder(tmp_path / "gray")["test"]
    conf, gallery = tmp_path / "conf.png", tmp_path / "gallery.png"
    args = ["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "gray"), "--json"]
    r = CliRunner().invoke(cli, [*args, "--confusion", str(conf), "--misclassified", str(gallery)])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    pred = _by_hand(m, x).argmax(1)
    assert res["n"] == len(y) == 15 and res["classes"] == list(CLASSES)
    assert res["accuracy"] == pytest.approx(np.mean(pred == y))
    assert np.array(res["confusion"]).sum(1).tolist() == [5, 5, 5]
    assert Image.open(conf).format == Image.open(gallery).format == "PNG"

    from mlplab.train.inspect import misclassified

    pics, labels = misclassified(m, x, y)
    assert pics.shape == (int(np.sum(pred != y)), 24, 24, 1) and len(labels) == len(pics)
    wrong = np.flatnonzero(pred != y)
    if len(wrong):
        assert np.array_equal(pics[0, :, :, 0], x[wrong[0]].reshape(24, 24))


def test_evaluate_refuses_data_of_another_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    _model(tmp_path / "m")
    _folder(tmp_path / "rgb", channels=3)
    args = ["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "rgb")]
    r = CliRunner().invoke(cli, [*args, "--json"])  # --json: no progress bars
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'm'} takes 24x24 grayscale images, but the data")
    assert line.endswith(" are RGB images")


def test_evaluate_flat_features_from_an_npz_on_their_scale(tmp_path):
    m = _model(tmp_path / "flat", None, d=64)
    rng = np.random.default_rng(8)
    x, y = rng.normal(0.5, 0.2, (30, 64)), np.arange(30) % 3
    xt, yt = rng.normal(0.5, 0.2, (12, 64)), np.arange(12) % 3
    np.savez(tmp_path / "f.npz", x=x, y=y, x_test=xt, y_test=yt, classes=np.array(CLASSES))
    args = ["evaluate", str(tmp_path / "flat"), "--data", str(tmp_path / "f.npz"), "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["n"] == 12 and res["accuracy"] == pytest.approx(
        np.mean(_by_hand(m, xt).argmax(1) == yt)
    )
    pixels = {"x": (x * 255).astype(np.uint8), "y": y, "classes": np.array(CLASSES)}
    np.savez(tmp_path / "u8.npz", **pixels)  # uint8: pixels on the scale 255, not 1
    args = ["evaluate", str(tmp_path / "flat"), "--data", str(tmp_path / "u8.npz"), "--json"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "takes values on the scale 1" in r.stderr
    assert "are on the scale 255" in r.stderr


def test_weights_are_pictures_of_the_models_shape(tmp_path):
    from mlplab.train.inspect import first_layer_images

    m = _model(tmp_path / "m")
    images, labels = first_layer_images(m)
    W = m.network.layers[0].params["W"].astype(np.float64)
    assert images.shape == (8, 24, 24, 1) and labels[-1] == "unit 7"
    w3 = W[:, 3]
    want = ((w3 - w3.min()) / (w3.max() - w3.min())).reshape(24, 24)
    np.testing.assert_allclose(images[3, :, :, 0], want, rtol=1e-6)
    r = CliRunner().invoke(cli, ["weights", str(tmp_path / "m"), "--out", str(tmp_path / "w.png")])
    assert r.exit_code == 0 and r.output.strip() == f"wrote {tmp_path / 'w.png'} (8 units)"
    _model(tmp_path / "flat", None, d=64)
    r = CliRunner().invoke(cli, ["weights", str(tmp_path / "flat"), "-o", str(tmp_path / "f.png")])
    assert r.exit_code == 2 and "needs a model of images" in r.stderr


@pytest.mark.slow
def test_weights_of_thousands_of_units_draw_a_hundred(tmp_path, monkeypatch):
    from mlplab.train import inspect

    _model(tmp_path / "m", hidden=(3000,))
    drawn = []
    monkeypatch.setattr(
        plots, "save_figure", lambda fig, path: drawn.append((len(fig.axes), fig.get_suptitle()))
    )
    args = ["weights", str(tmp_path / "m"), "--out", str(tmp_path / "w.png")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and r.output.strip().endswith("(100 of 3000 units)")
    r = CliRunner().invoke(cli, [*args, "--max-units", "7"])
    assert r.exit_code == 0 and r.output.strip().endswith("(7 of 3000 units)")
    assert [n for n, _ in drawn] == [100, 7]  # one picture each, no empty cells
    assert drawn[0][1].endswith("the first 100 of 3000 units")
    images, _ = inspect.first_layer_images(load_network(tmp_path / "m"), max_units=None)
    assert images.shape == (3000, 24, 24, 1)


# -- export ---------------------------------------------------------------------------------------
def _onnx_probs(path: Path, x: np.ndarray, d: int) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.shape == ["N", d]
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64}[inp.type]
    return sess.run(["probabilities"], {"pixels": x.astype(dtype)})[0]


@pytest.mark.parametrize("kind", ["gray", "gray-flip", "flat"])
def test_onnx_of_any_input_width_agrees_with_mlplab(tmp_path, kind):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(6)
    if kind == "flat":
        m = _model(tmp_path / "m", None, d=64)
        x = rng.normal(0.5, 0.2, (50, 64))
    else:
        m = _model(tmp_path / "m", flip=kind == "gray-flip")
        x = rng.integers(0, 256, (50, 576)).astype(np.uint8)
    out = tmp_path / "m.onnx"
    args = ["export", str(tmp_path / "m"), "--format", "onnx", "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(_onnx_probs(out, x, m.network.d_in), m.predict_proba(x), rtol=1e-5)
    meta = {p.key: p.value for p in __import__("onnx").load(out).metadata_props}
    assert json.loads(meta["image_shape"]) == (None if kind == "flat" else [24, 24, 1])
    assert json.loads(meta["scale"]) == m.scale


def _activation_net(rng: np.random.Generator, d: int) -> Network:
    from mlplab.nn.activations import GELU, LeakyReLU, Tanh
    from mlplab.nn.layers import Dense

    def dense(a, b):
        W = (rng.standard_normal((a, b)) * 2 / np.sqrt(a)).astype(np.float32)
        return Dense(W, rng.normal(0, 0.5, b).astype(np.float32))

    layers = [dense(d, 16), GELU(), dense(16, 12), LeakyReLU(slope=0.1), dense(12, 8)]
    return Network([*layers, Tanh(), dense(8, 3)])


def test_gelu_leaky_relu_and_tanh_export_to_onnx_and_torch(tmp_path):
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    rng = np.random.default_rng(7)
    net = _activation_net(rng, 64)
    save_network(tmp_path / "m", net, *_stats(rng, 64), CLASSES, image_shape=None, scale=1.0)
    m = load_network(tmp_path / "m")
    assert [ly.kind for ly in m.network.layers][1::2] == ["gelu", "leaky_relu", "tanh"]
    x = rng.normal(0.5, 0.3, (200, 64))
    h = m.network.layers[0].forward(m.preprocess(x))
    assert (h < -1).any() and (h > 1).any()  # the activations see both signs, not just 0
    for fmt in ("onnx", "safetensors"):
        out = tmp_path / f"m.{fmt}"
        args = ["export", str(tmp_path / "m"), "--format", fmt, "--out", str(out)]
        assert CliRunner().invoke(cli, args).exit_code == 0
    np.testing.assert_allclose(
        _onnx_probs(tmp_path / "m.onnx", x, 64), m.predict_proba(x), rtol=1e-5
    )
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = f.metadata()
    layers = json.loads(meta["layers"])
    assert layers[1] == {"module": "GELU", "approximate": "tanh"}
    assert layers[3] == {"module": "LeakyReLU", "negative_slope": 0.1}
    assert layers[5] == {"module": "Tanh"}
    assert json.loads(meta["image_shape"]) is None and json.loads(meta["scale"]) == 1.0
    seq = torch.nn.Sequential(*(getattr(torch.nn, d.pop("module"))(**d) for d in layers))
    state = st.load_file(str(tmp_path / "m.safetensors"))
    mean, std = state.pop("mlplab.mean").double(), state.pop("mlplab.std").double()
    seq.load_state_dict({k: v.double() for k, v in state.items()})
    with torch.no_grad():
        got = seq.double()((torch.from_numpy(x).double() / 1.0 - mean) / std).numpy()
    np.testing.assert_allclose(got, m.network.logits(m.preprocess(x)), rtol=1e-4, atol=1e-5)


# -- figures --------------------------------------------------------------------------------------
HOSTILE = ["$x$", "price in $", r"$\frac{$", "a$b$c$d", r"sum \$5", "_x $\\alpha$"]


@pytest.fixture
def figures(monkeypatch):
    """Each figure's drawn texts (as matplotlib lays them out), after it was saved for real."""
    drawn: list[list[str]] = []
    save = plots.save_figure

    def keep(fig, path):
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        # _preprocess_math: the string matplotlib draws and whether it parses it as mathtext
        shown = [t._preprocess_math(t.get_text()) for t in texts]
        assert not any(math for _, math in shown), [s for s, math in shown if math]
        drawn.append([s for s, _ in shown])
        save(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    return drawn


@pytest.mark.slow
def test_names_are_drawn_literally_never_as_mathtext(tmp_path, figures):
    history = [{"step": s, "train_loss": 1 / s, "val_accuracy": s / 10} for s in (1, 2, 3)]
    plots.plot_runs([(name, history) for name in HOSTILE], tmp_path / "runs.png")
    plots.plot_confusion(np.eye(len(HOSTILE), dtype=int), HOSTILE, tmp_path / "c.png", HOSTILE[0])
    pics = np.zeros((len(HOSTILE), 5, 5, 3), np.uint8)
    plots.plot_images(pics, HOSTILE, tmp_path / "i.png", title=HOSTILE[2])
    curves = [{**p, "cost": 1, "train_cost": 1, "train_accuracy": 0.1, "lr": 0.1} for p in history]
    curves = [{**p, "train_loss": 1.0, "loss": 1.0, "accuracy": 0.1} for p in curves]
    plots.plot_curves(curves, tmp_path / "curves.png", title=HOSTILE[3], train_label=HOSTILE[4])
    for texts in figures[:3]:
        for name in HOSTILE[1:]:  # "_x..." names are no legend entry: matplotlib hides them
            if name.startswith("_"):
                continue
            assert name in texts, (name, texts)
    assert HOSTILE[0] in figures[0] and HOSTILE[3] in figures[3] and HOSTILE[4] in figures[3]
    assert all((tmp_path / n).stat().st_size > 1000 for n in ("runs.png", "c.png", "i.png"))


def test_search_figure_with_two_parameters_and_a_fine_stage(tmp_path, figures):
    def panel(name, log):
        pts = {
            "coarse (5, 1 run(s) each)": (
                [1e-4, 1e-3, 1e-2, 0.1, 1],
                [30, 40, 45, 42, 20],
                [0] * 5,
            ),
            "fine (3, 2 run(s) each)": ([1e-3, 3e-3, 1e-2], [44, 46, 45], [0.5, 0.2, 0.3]),
        }
        return {
            "name": name,
            "log": log,
            "points": pts,
            "interval": (1e-3, 1e-2),
            "best": (3e-3, 46),
        }

    data = [panel("lam", True), panel("eta_$max$", True), panel("drop", False)]
    plots.plot_search(data, tmp_path / "s.png", "study $1$")
    (texts,) = figures
    assert texts.count("fine (3, 2 run(s) each)") == 3 and "eta_$max$" in texts
    assert "study $1$" in texts and (tmp_path / "s.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "shape", [(24, 24), (24, 24, 1), (17, 40, 3), (64, 48, 1)], ids=["hw", "hw1", "rgb", "tall"]
)
def test_plot_images_draws_grayscale_and_colour_of_any_size(tmp_path, shape, monkeypatch):
    seen = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: seen.append(fig))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape).astype(np.uint8) for _ in range(3)]
    images.append(rng.uniform(0, 1, shape))  # floats in [0, 1]
    plots.plot_images(images, ["a", "b", "c", "d"], tmp_path / "i.png")
    (fig,) = seen
    shown = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(shown) == 4
    for img, src in zip(shown, images, strict=True):
        arr = img.get_array()
        if len(shape) == 2 or shape[2] == 1:
            assert img.get_cmap().name == "gray" and arr.shape == shape[:2]
            assert img.get_clim() == ((0, 255) if src.dtype == np.uint8 else (0, 1.0))
        else:
            assert arr.shape == shape
    with pytest.raises(ValueError, match="a picture must be"):
        plots.plot_images([np.zeros((4, 4, 2))], ["x"], tmp_path / "bad.png")


def test_predict_reads_large_photos_and_their_orientation(tmp_path):
    """A photo larger than a data set's limit is shrunk, not refused; EXIF orientation is
    applied (a camera's portrait photo is stored sideways)."""
    from mlplab.images import ImageShape
    from mlplab.train.inspect import read_image

    shape = ImageShape(8, 8, 1)
    wide = np.zeros((300, 4200), np.uint8)
    wide[:, 2100:] = 255  # right half white
    Image.fromarray(wide).save(tmp_path / "wide.png")
    row = read_image(tmp_path / "wide.png", shape).reshape(8, 8)
    assert row[:, :3].max() < 30 and row[:, 5:].min() > 225
    tall = np.zeros((40, 20), np.uint8)
    tall[:20] = 255  # top half white, as the camera saw it
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(tall, 1)))  # stored turned left
    exif = sideways.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways.save(tmp_path / "photo.jpg", exif=exif, quality=100)
    row = read_image(tmp_path / "photo.jpg", ImageShape(8, 4, 1)).reshape(8, 4)
    assert row[:3].min() > 200 and row[5:].max() < 55


def test_onnx_of_features_far_from_zero_agrees_with_mlplab(tmp_path):
    """Features (scale 1) enter the graph as float64: timestamps near 1.7e9 have a float32
    step of 128, which would erase their differences before the standardisation."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(8)
    net = Network.build(5, [16], 3, rng=rng)
    mean, std = np.full(5, 1.7e9), np.full(5, 2.0)
    save_network(tmp_path / "m", net, mean, std, CLASSES, image_shape=None, scale=1.0)
    m = load_network(tmp_path / "m")
    x = 1.7e9 + rng.normal(0, 3, (100, 5))
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(
        cli, ["export", str(tmp_path / "m"), "--format", "onnx", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(double)"
    np.testing.assert_allclose(_onnx_probs(out, x, 5), m.predict_proba(x), rtol=1e-4, atol=1e-6)
