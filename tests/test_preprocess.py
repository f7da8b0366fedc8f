"""Tests of make_splits: sizes, seeding, disjointness and standardisation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from mlplab.data import SPLITS, RawDataset, Splits, column_stats, make_splits, standardize
from mlplab.errors import ConfigError, DataError

CLASSES = tuple(f"c{k}" for k in range(10))


def synthetic(n: int, n_test: int = 300, *, official: bool, seed: int = 0) -> RawDataset:
    """Random uint8 data whose first two pixels encode the row id (to trace samples)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    ids = np.arange(n)
    x[:, 0], x[:, 1] = ids % 256, ids // 256
    xt = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    tb = None
    if official:
        tb = np.repeat(np.arange(1, 6, dtype=np.int8), n // 5)
    return RawDataset(
        x_train=x,
        y_train=rng.integers(0, 10, size=n).astype(np.int64),
        x_test=xt,
        y_test=rng.integers(0, 10, size=n_test).astype(np.int64),
        classes=CLASSES,
        train_batch=tb,
        source="synthetic",
    )


def row_ids(s: Splits, x: np.ndarray) -> np.ndarray:
    """Recover the row ids from standardised data."""
    pix = np.rint((x[:, :2].astype(np.float64) * s.std[:2] + s.mean[:2]) * 255).astype(int)
    return pix[:, 0] + 256 * pix[:, 1]


@pytest.fixture(scope="module")
def raw6k() -> RawDataset:
    return synthetic(6000, official=False)


@pytest.mark.parametrize(
    ("split", "n_tr", "n_va"),
    [("45k", 1000, 5000), ("49k", 5000, 1000), ("all", 6000, 0), ("2000/500", 2000, 500)],
)
def test_sizes_and_disjoint(raw6k, split, n_tr, n_va):
    s = make_splits(raw6k, split, np.random.default_rng(0))
    assert s.x_train.shape == (n_tr, 3072) and s.y_train.shape == (n_tr,)
    assert s.x_val.shape == (n_va, 3072) and s.y_val.shape == (n_va,)
    assert s.x_test.shape == (300, 3072) and s.y_test.shape == (300,)
    assert s.x_train.dtype == s.x_val.dtype == s.x_test.dtype == np.float32
    assert s.y_train.dtype == s.y_val.dtype == s.y_test.dtype == np.int64
    assert s.mean.shape == s.std.shape == (3072,) and s.mean.dtype == np.float64
    assert s.name == split and s.classes == CLASSES
    tr, va = row_ids(s, s.x_train), row_ids(s, s.x_val)
    assert len(set(tr)) == n_tr and len(set(va)) == n_va and not set(tr) & set(va)
    np.testing.assert_array_equal(s.y_train, raw6k.y_train[tr])
    np.testing.assert_array_equal(s.y_val, raw6k.y_train[va])
    np.testing.assert_array_equal(s.y_test, raw6k.y_test)


def test_full_size_names_hold_their_meaning():
    assert SPLITS == ("batch", "45k", "49k", "all")


@pytest.mark.slow
def test_seeded_reproducible(raw6k):
    a = make_splits(raw6k, "45k", np.random.default_rng(7))
    b = make_splits(raw6k, "45k", np.random.default_rng(7))
    c = make_splits(raw6k, "45k", np.random.default_rng(8))
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "mean", "std"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(row_ids(a, a.x_val), row_ids(c, c.x_val))


def test_global_rng_untouched(raw6k):
    before = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG
    make_splits(raw6k, "2000/500", np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_standardisation_uses_train_stats_only(raw6k):
    s = make_splits(raw6k, "2000/500", np.random.default_rng(1))
    tr = row_ids(s, s.x_train)
    ref = raw6k.x_train[tr].astype(np.float64) / 255
    np.testing.assert_allclose(s.mean, ref.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.std, ref.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(s.x_train.mean(axis=0, dtype=np.float64), 0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(axis=0, dtype=np.float64), 1, atol=1e-5)
    # validation and test use the same statistics, so they are not exactly centred
    va = row_ids(s, s.x_val)
    expect_val = (raw6k.x_train[va] / 255 - s.mean) / s.std
    np.testing.assert_allclose(s.x_val, expect_val, atol=1e-5)
    np.testing.assert_allclose(s.x_test, (raw6k.x_test / 255 - s.mean) / s.std, atol=1e-5)
    assert np.abs(s.x_val.mean(axis=0, dtype=np.float64)).max() > 1e-3
    np.testing.assert_allclose(standardize(raw6k.x_test, s.mean, s.std), s.x_test, atol=1e-6)


def test_constant_dimension_guard():
    raw = synthetic(500, official=False)
    raw.x_train[:, 100] = 42
    s = make_splits(raw, "all", np.random.default_rng(0))
    assert s.std[100] == 1.0
    assert np.all(np.isfinite(s.x_train)) and np.all(s.x_train[:, 100] == 0)


def test_standardize_features_with_column_stats():
    """scale=1: features already on their scale (the estimator), a constant column left at 0."""
    rng = np.random.default_rng(3)
    x = rng.normal(1e5, 7.0, (300, 6))
    x[:, 2] = 5.0
    mean, std = column_stats(x)
    np.testing.assert_array_equal(mean, x.mean(axis=0))
    assert std[2] == 1.0 and np.all(std[[0, 1, 3, 4, 5]] == x.std(axis=0)[[0, 1, 3, 4, 5]])
    out = standardize(x, mean, std, np.float64, scale=1.0)
    assert out.dtype == np.float64 and not np.shares_memory(out, x)
    np.testing.assert_allclose(out, (x - mean) / std, rtol=0, atol=1e-12)
    assert np.all(out[:, 2] == 0)
    pix = rng.integers(0, 256, (10, 6)).astype(np.uint8)
    np.testing.assert_allclose(  # the default scale is the pixels' 255
        standardize(pix, mean / 255, std / 255), standardize(pix, mean, std, scale=1.0), rtol=1e-6
    )


def test_float64_option(raw6k):
    s32 = make_splits(raw6k, "2000/500", np.random.default_rng(3))
    s64 = make_splits(raw6k, "2000/500", np.random.default_rng(3), dtype=np.float64)
    assert s64.x_train.dtype == s64.x_val.dtype == s64.x_test.dtype == np.float64
    np.testing.assert_allclose(s64.x_train, s32.x_train, atol=1e-5)
    with pytest.raises(ConfigError, match="float32 or float64"):
        make_splits(raw6k, "all", np.random.default_rng(0), dtype=np.int32)


def test_n_train(raw6k):
    full = make_splits(raw6k, "2000/500", np.random.default_rng(4))
    few = make_splits(raw6k, "2000/500", np.random.default_rng(4), n_train=100)
    assert few.x_train.shape == (100, 3072)
    np.testing.assert_array_equal(row_ids(few, few.x_train), row_ids(full, full.x_train)[:100])
    np.testing.assert_array_equal(few.y_val, full.y_val)
    np.testing.assert_array_equal(row_ids(few, few.x_val), row_ids(full, full.x_val))
    np.testing.assert_allclose(few.x_train.mean(axis=0, dtype=np.float64), 0, atol=1e-5)
    for bad in (0, 2001, 1.5):
        with pytest.raises(ConfigError, match="n_train"):
            make_splits(raw6k, "2000/500", np.random.default_rng(4), n_train=bad)


def test_batch_official_uses_batches_1_and_2():
    raw = synthetic(1000, official=True)  # 200 per batch
    s = make_splits(raw, "batch", np.random.default_rng(0), n_train=150)
    np.testing.assert_array_equal(row_ids(s, s.x_train), np.arange(150))
    np.testing.assert_array_equal(row_ids(s, s.x_val), np.arange(200, 400))
    np.testing.assert_array_equal(s.y_train, raw.y_train[:150])
    full = make_splits(raw, "batch", np.random.default_rng(99))
    np.testing.assert_array_equal(row_ids(full, full.x_train), np.arange(200))


def test_batch_image_folder_draws_20k():
    raw = synthetic(20_500, n_test=10, official=False)
    s = make_splits(raw, "batch", np.random.default_rng(0))
    assert s.x_train.shape == (10_000, 3072) and s.x_val.shape == (10_000, 3072)
    tr, va = row_ids(s, s.x_train), row_ids(s, s.x_val)
    assert len(set(tr) | set(va)) == 20_000
    assert not np.array_equal(tr, np.arange(10_000))  # a draw, not the first rows
    with pytest.raises(DataError, match="20000"):
        make_splits(synthetic(1000, official=False), "batch", np.random.default_rng(0))


def test_bad_split_specs(raw6k):
    rng = np.random.default_rng(0)
    for bad in ("", "50k", "10/", "a/b", "0/10", "-1/5"):
        with pytest.raises(ConfigError, match="split"):
            make_splits(raw6k, bad, rng)
    with pytest.raises(DataError, match="only 6000"):
        make_splits(raw6k, "5000/1001", rng)
    with pytest.raises(DataError, match="only 400"):
        make_splits(synthetic(400, official=False), "45k", rng)
    s = make_splits(raw6k, " 10 / 0 ", rng)
    assert s.name == "10/0" and s.x_val.shape == (0, 3072)


def test_peak_memory_bounded(raw6k):
    """Peak allocation stays well under 2x the float32 train array (+ outputs)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        s = make_splits(raw6k, "all", np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = s.x_train.nbytes + s.x_val.nbytes + s.x_test.nbytes
    assert peak < outputs + 0.5 * s.x_train.nbytes + 40e6, (peak, outputs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_saved_model_standardises_exactly_as_training_did(raw6k, dtype):
    """evaluate/predict (SavedModel.preprocess) see the very test inputs of training."""
    from mlplab.nn.network import Network
    from mlplab.nn.serialize import SavedModel

    s = make_splits(raw6k, "5000/500", np.random.default_rng(0), dtype=dtype)
    net = Network.build(3072, [4], 10, rng=np.random.default_rng(1), dtype=dtype)
    model = SavedModel(net, s.mean, s.std, tuple("abcdefghij"), {})
    np.testing.assert_array_equal(model.preprocess(raw6k.x_test), s.x_test)
