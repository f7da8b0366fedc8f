"""ZCA whitening and test-time flip averaging: the transform, the splits, model files,
runs, the estimator and the ablation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import synthetic_raw

from mlplab.config import load_recipe
from mlplab.data import make_splits
from mlplab.data.augment import augment_batch
from mlplab.errors import ConfigError, ModelFileError
from mlplab.images import CIFAR10_SHAPE, ImageShape
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_model_files, load_network, save_model, save_network
from mlplab.train.prepared import load_split, prepare_splits, split_key
from mlplab.transform.whiten import apply_whitening, fit_zca


def flip_permutation(d: int) -> np.ndarray:
    assert d == CIFAR10_SHAPE.size
    return CIFAR10_SHAPE.flip_permutation()


def _correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    return x - x.mean(axis=0)


def test_zca_whitens_and_damps_small_directions():
    x = _correlated(4000, 12)
    cov = x.T @ x / len(x)
    s, u = np.linalg.eigh(cov)
    for eps in (1e-6, 0.5):
        w = fit_zca(x, eps)
        np.testing.assert_array_equal(w, w.T)
        # the whitened covariance has eigenvalues s / (s + eps) in the same directions
        want = (u * (s / (s + eps))) @ u.T
        np.testing.assert_allclose(w @ cov @ w, want, atol=1e-8)
    np.testing.assert_allclose(fit_zca(x, 1e-9) @ cov @ fit_zca(x, 1e-9), np.eye(12), atol=1e-6)


@pytest.mark.slow
def test_zca_of_images_commutes_with_the_trainers_flip():
    x = _correlated(300, 3072)
    w = fit_zca(x, 0.1, mirror=True)
    perm = flip_permutation(3072)
    np.testing.assert_allclose(w[np.ix_(perm, perm)], w, atol=1e-9)
    rows = np.asarray(x[:8], np.float64)
    whitened = rows @ w
    flipped = whitened.copy()
    augment_batch(flipped, np.random.default_rng(0), flip=True)  # some rows mirrored
    mirrored = ~np.all(flipped == whitened, axis=1)
    assert mirrored.any()
    np.testing.assert_allclose(flipped[mirrored], rows[mirrored][:, perm] @ w, atol=1e-9)


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf")])
def test_zca_refuses_impossible_eps(eps):
    with pytest.raises(ConfigError, match="positive"):
        fit_zca(np.ones((5, 3)), eps)
    if eps != 0:  # 0 in a recipe means no whitening
        with pytest.raises(ConfigError, match="zca_eps"):
            load_recipe("bonus/best", {"zca_eps": str(eps)})
    with pytest.raises(ConfigError, match="2 training samples"):
        fit_zca(np.ones((1, 3)), 1.0)


def test_apply_whitening_in_place_by_chunks():
    x = _correlated(5000, 7).astype(np.float32)  # more rows than one chunk
    w = fit_zca(x, 0.1).astype(np.float32)
    want = x @ w
    apply_whitening(x, w)
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_splits_whiten_train_val_and_test_alike(tmp_path):
    from mlplab.machine import blas_threads

    raw = synthetic_raw(n_train=700, n_test=50, side=12)  # 432 values: a cheap whitening fit
    plain = make_splits(raw, "500/100", np.random.default_rng(3))
    with blas_threads(1):  # as the recipe below says (rounding depends on it)
        s = make_splits(raw, "500/100", np.random.default_rng(3), zca_eps=1.0)
    assert plain.whiten is None and s.whiten.shape == (432, 432)
    assert s.whiten.dtype == s.x_train.dtype == np.float32
    np.testing.assert_allclose(s.x_train, plain.x_train @ s.whiten, atol=1e-4)
    np.testing.assert_allclose(s.x_val, plain.x_val @ s.whiten, atol=1e-4)
    np.testing.assert_allclose(s.x_test, plain.x_test @ s.whiten, atol=1e-4)
    # prepared splits (search workers) carry the matrix and key on the eps
    sets = {"split": "500/100", "seed": "3", "zca_eps": "1.0", "threads": "1"}
    cfg = load_recipe("bonus/best", sets)
    assert split_key(cfg) != split_key(load_recipe("bonus/best", {"split": "500/100"}))
    prepare_splits(raw, [cfg], tmp_path)
    loaded, _ = load_split(tmp_path, cfg)
    np.testing.assert_array_equal(loaded.whiten, s.whiten)
    np.testing.assert_array_equal(loaded.x_train, s.x_train)


@pytest.mark.slow
def test_whitening_after_the_raw_pixels_are_freed_gives_the_same_splits():
    """A run builds its splits, frees the raw pixels, then whitens (recipe_splits with
    whiten=False, then whiten_recipe_splits): the same bits as whitening at once."""
    from mlplab.machine import blas_threads
    from mlplab.train.prepared import recipe_splits, whiten_recipe_splits

    raw = synthetic_raw(n_train=700, n_test=50, side=12)
    cfg = load_recipe("bonus/best", {"split": "500/100", "seed": "3", "threads": "1"})
    with blas_threads(1):  # by hand: the plain splits, then the matrix fitted and applied
        ref = make_splits(raw, "500/100", np.random.default_rng(3))
        w = fit_zca(ref.x_train, 1.0, mirror=raw.image_shape).astype(np.float32)
        x_train, x_val = ref.x_train @ w, ref.x_val @ w
    rng = np.random.default_rng(3)
    later = recipe_splits(raw, cfg, rng, whiten=False)
    assert later.whiten is None
    later = whiten_recipe_splits(later, cfg)
    np.testing.assert_array_equal(later.whiten, w)
    np.testing.assert_array_equal(later.x_train, x_train)
    np.testing.assert_array_equal(later.x_val, x_val)
    at_once = recipe_splits(raw, cfg, np.random.default_rng(3))
    for name in ("x_train", "x_val", "x_test", "whiten", "mean", "std"):
        np.testing.assert_array_equal(getattr(later, name), getattr(at_once, name))
    with pytest.raises(ValueError, match="already whitened"):
        whiten_recipe_splits(later, cfg)
    plain = load_recipe("bonus/best", {"split": "500/100", "zca_eps": "0", "threads": "1"})
    assert whiten_recipe_splits(later, plain) is later  # nothing to do without zca_eps


def test_fit_zca_is_the_textbook_expression_bit_for_bit():
    x = _correlated(300, 24, seed=5)
    cov = x.T @ x / len(x)
    s, u = np.linalg.eigh(cov)
    w = (u * (1.0 / np.sqrt(np.maximum(s, 0.0) + 0.1))) @ u.T
    np.testing.assert_array_equal(fit_zca(x, 0.1), (w + w.T) / 2)


def test_flip_average_is_the_mean_of_both_views():
    net = Network.build(3072, [8], 10, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((30, 3072)).astype(np.float32)
    both = net.predict_proba(x, 7, mirror=flip_permutation(3072))
    want = (net.predict_proba(x) + net.predict_proba(x[:, flip_permutation(3072)])) / 2
    np.testing.assert_allclose(both, want, rtol=1e-5, atol=1e-7)
    small = Network.build(12, [4], 3, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="mirror permutation of 3072 columns for 12"):
        small.predict_proba(np.zeros((2, 12), np.float32), mirror=flip_permutation(3072))


def _run(tmp_path, **sets):
    from mlplab.train.run import run_experiment

    base = {"split": "500/100", "n_s": "20", "batch_size": "25", "hidden": "16", "cycles": "1"}
    cfg = load_recipe("bonus/best", base | sets)
    raw = synthetic_raw(n_train=600, n_test=300, noise=70.0, side=12)
    return raw, run_experiment(cfg, tmp_path / "run", raw=raw, progress=False)


@pytest.mark.slow
def test_run_saves_the_transform_and_scores_as_the_saved_model_predicts(tmp_path):
    from mlplab.train.inspect import evaluate_models

    raw, res = _run(tmp_path, zca_eps="0.5", flip_average="true")
    m = load_network(tmp_path / "run" / "model")
    assert m.whiten is not None and m.flip_average
    acc = float(np.mean(m.predict_proba(raw.x_test).argmax(1) == raw.y_test))
    assert acc == res["test_accuracy"]
    assert evaluate_models([m], raw.x_test, raw.y_test, m.classes)["accuracy"] == acc
    single_view = m.network.predict_proba(m.preprocess(raw.x_test))
    single = float(np.mean(single_view.argmax(1) == raw.y_test))
    assert single == res["test_accuracy_single_view"]
    assert "ensemble_test_accuracy_single_view" in res
    snap = load_network(tmp_path / "run" / "model-snapshot-1")
    np.testing.assert_array_equal(snap.whiten, m.whiten)
    assert snap.flip_average


def test_model_file_transform_checked(tmp_path):
    net = Network.build(3072, [4], 10, rng=np.random.default_rng(0))
    w = np.eye(3072, dtype=np.float32)
    save_network(tmp_path / "m", net, np.zeros(3072), np.ones(3072), tuple("abcdefghij"), whiten=w)
    meta, arrays = load_model_files(tmp_path / "m")
    assert load_network(tmp_path / "m").whiten.dtype == np.float32

    def broken(name, meta_change=None, **arrays_change):
        save_model(tmp_path / name, {**meta, **(meta_change or {})}, {**arrays, **arrays_change})
        return tmp_path / name

    bad = np.eye(3072, dtype=np.float32)
    bad[0, 0] = np.nan
    cases = [
        (broken("shape", **{"preprocess/whiten": np.eye(12, dtype=np.float32)}), "shape"),
        (broken("dtype", **{"preprocess/whiten": np.eye(3072)}), "float32"),
        (broken("nan", **{"preprocess/whiten": bad}), "NaN"),
        (broken("extra", **{"preprocess/other": np.zeros(3)}), "unexpected"),
        (broken("flag", {"flip_average": "yes"}), "true or false"),
    ]
    for path, msg in cases:
        with pytest.raises(ModelFileError, match=msg):
            load_network(path)


def test_estimator_whitens_as_fitted():
    from mlplab.train.estimator import MLPClassifier

    x = _correlated(300, 6, seed=2)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    clf = MLPClassifier(hidden=(8,), n_s=20, zca_eps=1e-4).fit(x, y)
    assert clf.whiten_.shape == (6, 6)
    z = (x - clf.mean_) / clf.std_ @ clf.whiten_
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(6), atol=0.05)
    # the one input transform: standardised in float64, cast, whitened in the network's dtype
    z32 = ((x - clf.mean_) / clf.std_).astype(np.float32) @ clf.whiten_.astype(np.float32)
    np.testing.assert_allclose(clf.transform_(x, np.float32), z32, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        clf.predict_proba(x), clf.network_.predict_proba(z32), rtol=1e-5, atol=1e-6
    )
    assert MLPClassifier().fit(x, y).whiten_ is None


@pytest.mark.slow
def test_ablation_scores_flip_averaging_without_training_again(tmp_path):
    from mlplab.train.ablation import run_ablation

    sets = {"split": "500/100", "n_s": "20", "batch_size": "25", "hidden": "16", "cycles": "1"}
    cfg = load_recipe(
        "bonus/best", sets | {"zca_eps": "0.5", "flip_average": "true", "drop_prob": "0"}
    )
    cfg.flip, cfg.translate, cfg.batch_norm, cfg.label_smoothing, cfg.lam = False, 0, False, 0, 0
    raw = synthetic_raw(n_train=600, n_test=300, noise=70.0, side=12)
    rows = run_ablation(cfg, tmp_path, raw, progress=False)
    removed = [r["removed"] for r in rows]
    assert removed == ["nothing (full recipe)", "snapshot-ensemble", "flip-averaging", "whitening"]
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    assert rows[2]["test_accuracy"] == full["ensemble_test_accuracy_single_view"]
    nowhite = json.loads((tmp_path / "no-whitening" / "results.json").read_text())
    assert nowhite["config"]["zca_eps"] == 0


def test_whitened_model_files_are_version_2_and_older_readers_refuse_them(tmp_path, monkeypatch):
    import mlplab.nn.serialize as model_format

    net = Network.build(3072, [4], 10, rng=np.random.default_rng(0))
    stats, classes = (np.zeros(3072), np.ones(3072)), tuple("abcdefghij")
    save_network(tmp_path / "plain", net, *stats, classes)
    save_network(tmp_path / "flip", net, *stats, classes, flip_average=True)
    save_network(tmp_path / "zca", net, *stats, classes, whiten=np.eye(3072, dtype=np.float32))
    versions = {n: load_model_files(tmp_path / n)[0]["format_version"] for n in ("plain", "flip")}
    assert versions == {"plain": 1, "flip": 2}
    monkeypatch.setattr(model_format, "MODEL_VERSION", 1)  # a reader from before the transform
    load_network(tmp_path / "plain")
    for name in ("flip", "zca"):
        with pytest.raises(ModelFileError, match="newer than this mlplab supports"):
            load_network(tmp_path / name)


def test_hostile_preprocess_arrays_give_one_error(tmp_path):
    net = Network.build(3072, [4], 10, rng=np.random.default_rng(0))
    save_network(tmp_path / "m", net, np.zeros(3072), np.ones(3072), tuple("abcdefghij"))
    meta, arrays = load_model_files(tmp_path / "m")
    odd = np.zeros(3, dtype=[("a", "i4"), ("b", "f4")])
    for i, evil in enumerate((np.array(["x", "y"]), odd)):
        save_model(tmp_path / f"e{i}", meta, {**arrays, "preprocess/evil": evil})
        with pytest.raises(ModelFileError, match="unexpected arrays"):
            load_network(tmp_path / f"e{i}")


def test_impossible_whitening_settings_are_refused():
    from mlplab.search.space import Param

    for eps in ("1e-90", "5e-5"):
        with pytest.raises(ConfigError, match=r"at least 0\.0001"):
            load_recipe("bonus/best", {"zca_eps": eps})
    with pytest.raises(ConfigError, match="split"):
        Param.make("zca_eps", "log", 0.1, 10)
    with pytest.raises(ConfigError, match="32x32"):
        fit_zca(np.ones((4, 12)), 1.0, mirror=True)
    with pytest.raises(ConfigError, match="NaN or inf"):
        fit_zca(np.full((4, 3), np.inf), 1.0)
    with pytest.raises(ConfigError, match="true or false"):
        load_recipe("bonus/best").__class__(flip_average="no").validate()


@pytest.mark.slow
def test_estimator_transform_is_fixed_at_fit():
    from mlplab.train.estimator import MLPClassifier

    x = _correlated(200, 6, seed=3)
    y = (x[:, 0] > 0).astype(int)
    with pytest.raises(ConfigError, match="true or false"):
        MLPClassifier(n_s=10, flip_average="no").fit(x, y)
    with pytest.raises(ConfigError, match="standardize=True"):
        MLPClassifier(n_s=10, zca_eps=0.1, standardize=False).fit(x, y)
    with pytest.raises(ConfigError, match="need images"):
        MLPClassifier(n_s=10, flip_average=True).fit(x, y)
    clf = MLPClassifier(hidden=(8,), n_s=10, zca_eps=0.1).fit(x, y)
    before = clf.predict_proba(x)
    clf.set_params(flip_average=True)  # takes effect at the next fit only
    np.testing.assert_array_equal(clf.predict_proba(x), before)
    # 3072 features that are not flipped images: no mirror symmetry is imposed
    wide = _correlated(50, 3072, seed=4)
    w = MLPClassifier(hidden=(4,), n_s=2, zca_eps=0.1).fit(wide, np.arange(50) % 2).whiten_
    perm = flip_permutation(3072)
    assert np.abs(w[np.ix_(perm, perm)] - w).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("opset", [17, 18, 21])
def test_flip_averaged_onnx_in_every_opset(tmp_path, opset):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from mlplab.nn.export import to_onnx

    raw, _ = _run(tmp_path, zca_eps="0.5", flip_average="true")
    m = load_network(tmp_path / "run" / "model")
    sess = ort.InferenceSession(to_onnx(m, opset=opset), providers=["CPUExecutionProvider"])
    (probs,) = sess.run(["probabilities"], {"pixels": raw.x_test[:50].astype(np.float32)})
    np.testing.assert_allclose(probs, m.predict_proba(raw.x_test[:50]), atol=1e-5)


@pytest.mark.parametrize("shape", [ImageShape(6, 5, 1), ImageShape(4, 7, 3)])
def test_zca_mirror_follows_the_images_own_shape(shape):
    """Any image shape: the matrix commutes with that shape's flip; a permutation given as
    an array is the same mirror; a shape of another size is refused."""
    x = _correlated(400, shape.size, seed=2)
    perm = shape.flip_permutation()
    w = fit_zca(x, 0.1, mirror=shape)
    np.testing.assert_allclose(w[np.ix_(perm, perm)], w, atol=1e-9)
    assert np.abs(fit_zca(x, 0.1) - w).max() > 1e-3  # the mirror did change something
    np.testing.assert_array_equal(fit_zca(x, 0.1, mirror=perm), w)
    with pytest.raises(ConfigError, match=str(shape)):
        fit_zca(x[:, :-1], 0.1, mirror=shape)
    with pytest.raises(ConfigError, match="permutation"):
        fit_zca(x, 0.1, mirror=np.zeros(shape.size, int))


def test_whitened_splits_of_flat_features_impose_no_mirror():
    from mlplab.data import RawDataset
    from mlplab.data.preprocess import whiten_splits

    shape = ImageShape(4, 3, 3)
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (300, shape.size)) // 2 + np.arange(shape.size)).astype(np.uint8)
    y = np.arange(300) % 3
    for image_shape in (None, shape):
        raw = RawDataset(x, y, x[:20], y[:20], ("a", "b", "c"), None, "test", image_shape)
        sp = make_splits(raw, "200/50", np.random.default_rng(0))
        assert sp.image_shape == image_shape
        want = fit_zca(sp.x_train, 0.5, mirror=image_shape).astype(np.float32)
        if image_shape is None:  # a mirror would have made a difference
            assert np.abs(want - fit_zca(sp.x_train, 0.5, mirror=shape)).max() > 1e-4
        np.testing.assert_array_equal(whiten_splits(sp, 0.5).whiten, want)
