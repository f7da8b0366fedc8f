"""Edges of own data found by trying as an attacker would: file names that are not UTF-8,
labels that are not class numbers, features near float64's limits, special files given to
predict, and nonsense given to the new options."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlplab.cli import cli
from mlplab.config import load_recipe
from mlplab.data import load_data
from mlplab.data.preprocess import column_stats
from mlplab.errors import ConfigError, DataError
from mlplab.train.estimator import MLPClassifier


def _folder(root, n=4):
    for part in ("train", "test"):
        for k, c in enumerate(("a", "b")):
            (root / part / c).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (6, 6), 30 * k + i).save(root / part / c / f"{i}.png")
    return root


def test_file_and_class_names_that_are_not_utf8_load(tmp_path):
    root = _folder(tmp_path / "d")
    bad = os.fsdecode(b"\xff\xfe.png")
    shutil.copy(root / "train" / "a" / "1.png", root / "train" / "a" / bad)
    os.rename(root / "train" / "b", root / "train" / os.fsdecode(b"b\xff"))
    os.rename(root / "test" / "b", root / "test" / os.fsdecode(b"b\xff"))
    raw = load_data(root, cache_dir=tmp_path / "cache", progress=False)
    assert len(raw.y_train) == 9 and raw.classes[1] == os.fsdecode(b"b\xff")
    again = load_data(root, cache_dir=tmp_path / "cache", progress=False)  # from the cache
    np.testing.assert_array_equal(again.x_train, raw.x_train)


@pytest.mark.parametrize(
    "y", [np.array([0, 1, 10**9] * 10), np.array([0, 1, 2] * 10, np.uint64) + np.uint64(2**63)]
)
def test_labels_that_are_not_class_numbers_are_refused_at_once(tmp_path, y):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).random((30, 4)), y=y)
    with pytest.raises(DataError, match=r"class numbers 0\.\.K-1 with K at most 100000"):
        load_data(tmp_path / "d.npz", progress=False)


def test_features_near_the_float64_limit_standardise_or_are_refused():
    x = np.random.default_rng(0).random((50, 3)) * 1e155  # the squares overflow
    _, std = column_stats(x)
    np.testing.assert_allclose(std, (x / 1e155).std(axis=0) * 1e155, rtol=1e-12)
    with pytest.raises(DataError, match="too large to average"):
        column_stats(np.full((10, 2), 1.7e308))


def test_predict_refuses_a_fifo_at_once(tmp_path):
    from mlplab.nn.network import Network
    from mlplab.nn.serialize import save_network

    net = Network.build(36, [4], 2, rng=np.random.default_rng(0))
    save_network(tmp_path / "m", net, np.zeros(36), np.ones(36), ("a", "b"), image_shape=[6, 6, 1])
    os.mkfifo(tmp_path / "f.png")
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "m"), str(tmp_path / "f.png")])
    assert r.exit_code == 2 and "not an image file" in r.output  # returned: no blocking open
    Image.new("L", (9, 9), 200).save(tmp_path / "ok.png")
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "m"), str(tmp_path / "ok.png")])
    assert r.exit_code == 0 and r.output.count("%") == 2  # a two-class model: its two classes


def test_nonsense_options_get_one_clear_error():
    for sets, msg in (
        ({"size": "8,"}, "expects list"),
        ({"size": "24,24,3"}, "size must be"),
        ({"noise_std": "1e308"}, "noise_std must be"),
        ({"activation": "batchnorm"}, "activation must be one of"),
        ({"zzz": "1"}, "unknown recipe key 'zzz'"),
    ):
        with pytest.raises(ConfigError, match=msg):
            load_recipe("assignment2/ex3", sets)
    assert load_recipe("assignment2/ex3", {"size": "24X20"}).size == [24, 20]
    X, y = np.random.default_rng(0).random((40, 4)), np.arange(40) % 2
    for layers in ("gelu", {"dense": 5}):
        with pytest.raises(ConfigError, match="layers must be a list"):
            MLPClassifier(layers=layers).fit(X, y)
    r = CliRunner().invoke(cli, ["gradcheck", "--activation", "dropout"])
    assert r.exit_code == 2 and "activation must be one of relu, gelu" in r.output


def test_a_recipe_that_is_a_fifo_or_huge_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "r.toml")
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_recipe(str(tmp_path / "r.toml"))
    (tmp_path / "big.toml").write_text("# " + "x" * (2 << 20))
    with pytest.raises(ConfigError, match="over the limit"):
        load_recipe(str(tmp_path / "big.toml"))


def test_threads_beyond_the_cores_are_refused_when_a_run_starts(tmp_path):
    from helpers import synthetic_raw

    from mlplab.machine import usable_cores
    from mlplab.train.run import run_experiment

    cfg = load_recipe("assignment2/ex3", {"threads": str(usable_cores() + 1)})  # loads anywhere
    with pytest.raises(ConfigError, match=r"threads \(BLAS threads\) must be an integer in 1\.\."):
        run_experiment(cfg, tmp_path / "r", raw=synthetic_raw(50, 10), progress=False)
    assert not (tmp_path / "r").exists()  # refused before the directory is made


def test_an_npz_with_an_empty_test_part_is_one_error(tmp_path):
    x = np.random.default_rng(0).random((20, 3))
    y = np.arange(20) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:0], y_test=y[:0])
    with pytest.raises(DataError, match="y_test holds no samples"):
        load_data(tmp_path / "d.npz", progress=False)
