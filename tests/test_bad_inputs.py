"""The catalogue of bad inputs: each gives one clear error line, exit status 2, no traceback,
and leaves existing output files untouched."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_data_loaders import write_bin, write_folder, write_py

from mlplab.cli import cli
from mlplab.nn.network import Network
from mlplab.nn.serialize import save_network

OLD = b"previous output"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPLAB_DATA", raising=False)


def _out(tmp_path: Path) -> Path:
    """An output directory that already holds files a failed run must not touch."""
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    for name in ("curves.png", "model.npz", "model.json", "run.json"):
        (out / name).write_bytes(OLD)
    return out


def _fails(tmp_path: Path, args: list[str], *patterns: str) -> str:
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in r.output
    for p in patterns:
        assert p in err, (p, err)
    if out.is_dir():
        for name in ("curves.png", "model.npz", "model.json", "run.json"):
            assert (out / name).read_bytes() == OLD, name
        assert not (out / "results.json").exists()
    return err


def _train(tmp_path, data, *extra):
    return [
        "train",
        "--recipe",
        "assignment2/ex3",
        "--data",
        str(data),
        "--out",
        str(_out(tmp_path)),
        "--quiet",
        *extra,
    ]


# -- data --------------------------------------------------------------------------------------
def test_missing_data_dir(tmp_path):
    _fails(tmp_path, _train(tmp_path, tmp_path / "nowhere"), "nowhere")


def test_empty_data_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path, _train(tmp_path, tmp_path / "empty"), "empty")


def test_truncated_python_batch(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    f = d / "data_batch_1"
    f.write_bytes(f.read_bytes()[:500])
    _fails(tmp_path, _train(tmp_path, d), "data_batch_1")


def test_truncated_binary_batch(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    f = d / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-100])
    _fails(tmp_path, _train(tmp_path, d), "data_batch_3.bin")


def test_binary_batch_wrong_record_size(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    (d / "test_batch.bin").write_bytes(bytes(3072 * 5))
    _fails(tmp_path, _train(tmp_path, d), "test_batch.bin", "record size")


def test_sparse_huge_binary_batch_is_refused_unread(tmp_path):
    """A 30 GB sparse file whose size is a multiple of 3073: refused by its size alone."""
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    with open(d / "data_batch_4.bin", "wb") as f:
        f.truncate(3073 * 10_000_000)  # sparse: takes no disk space
    _fails(tmp_path, _train(tmp_path, d), "data_batch_4.bin", "10000000 images, more than")


def test_empty_test_batch(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    (d / "test_batch").write_bytes(
        pickle.dumps({b"labels": [], b"data": np.zeros((0, 3072), np.uint8)})
    )
    _fails(tmp_path, _train(tmp_path, d), "test set is empty")


def test_pickle_batch_missing_keys(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    (d / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    _fails(tmp_path, _train(tmp_path, d), "data_batch_2", "labels")


def _folder_with(tmp_path, name, writer):
    root = tmp_path / "imgs"
    write_folder(root)
    writer(root / "train" / "cat" / name)
    return root


def test_folder_class_is_a_symlink_loop(tmp_path):
    root = tmp_path / "imgs"
    write_folder(root)
    for part in ("train", "test"):
        os.symlink("loopy", root / part / "loopy")  # a link to itself
    _fails(tmp_path, _train(tmp_path, root), "Too many levels of symbolic links", "loopy")


def test_folder_non_image_file(tmp_path):
    root = _folder_with(tmp_path, "notes.txt", lambda p: p.write_text("hi"))
    _fails(tmp_path, _train(tmp_path, root), "notes.txt")


def test_folder_corrupt_jpeg(tmp_path):
    def writer(p):
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(buf, "JPEG")
        p.write_bytes(buf.getvalue()[:200])

    _fails(tmp_path, _train(tmp_path, _folder_with(tmp_path, "bad.jpg", writer)), "bad.jpg")


def test_folder_wrong_size_image(tmp_path):
    root = _folder_with(tmp_path, "big.png", lambda p: Image.new("RGB", (40, 32)).save(p))
    _fails(tmp_path, _train(tmp_path, root), "big.png", "40x32")


def test_folder_grayscale_image_in_a_colour_set_is_expanded(tmp_path):
    """One grayscale image among colour ones is read as RGB (three equal planes), not
    refused: the set has 3 channels because it holds colour images."""
    from mlplab.data import load_data

    root = _folder_with(tmp_path, "gray.png", lambda p: Image.new("L", (32, 32), 77).save(p))
    raw = load_data(root, cache_dir=tmp_path / "cache", progress=False)
    assert raw.image_shape.to_list() == [32, 32, 3]
    rows = raw.x_train[np.all(raw.x_train == 77, axis=1)]
    assert len(rows) == 1  # the gray image: all three planes 77


def test_folder_class_folders_differ(tmp_path):
    root = tmp_path / "imgs"
    write_folder(root)
    (root / "test" / "dog").rename(root / "test" / "horse")
    _fails(tmp_path, _train(tmp_path, root), "dog", "horse")


# -- recipes -----------------------------------------------------------------------------------
@pytest.fixture
def good_data(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_bin(d)
    return d


@pytest.mark.parametrize(
    ("sets", "pattern"),
    [
        ("bogus=1", "unknown recipe key 'bogus'"),
        ("lam=ten", "expects float"),
        ("eta_min=0.5", "must not exceed eta_max"),
        ("lam=-0.1", "lam must be >= 0"),
        ("n_s=0", "n_s must be >= 1"),
        ("hidden=50,-3", "hidden sizes"),
        ("eta_max=nan", "eta_max must be a finite number"),
        ("optimizer=adamx", "optimizer must be one of sgd, momentum, nesterov, adam"),
        ("init=foo", "init must be one of course, he, xavier, normal"),
        ("bn_position=middle", "bn_position must be before_relu or after_relu"),
    ],
)
def test_bad_recipe_values(tmp_path, good_data, sets, pattern):
    _fails(tmp_path, _train(tmp_path, good_data, "--set", sets), pattern)


def test_recipe_file_unknown_key_and_wrong_type(tmp_path, good_data):
    p = tmp_path / "r.toml"
    p.write_text("hidden = [50]\nlearning_rate = 0.1\n")
    args = ["train", "--recipe", str(p), "--data", str(good_data), "--out", str(_out(tmp_path))]
    _fails(tmp_path, args, "unknown recipe key 'learning_rate'")
    p.write_text('hidden = "fifty"\n')
    _fails(tmp_path, args, "'hidden' expects")


def test_batch_larger_than_split(tmp_path, good_data):
    _fails(
        tmp_path,
        _train(tmp_path, good_data, "--set", "split=10/5", "--set", "batch_size=100"),
        "batch_size 100 is larger",
    )


# -- model files -------------------------------------------------------------------------------
@pytest.fixture
def model(tmp_path):
    net = Network.build(3072, [4], 10, rng=np.random.default_rng(0))
    save_network(tmp_path / "m", net, np.zeros(3072), np.ones(3072), tuple("abcdefghij"))
    return tmp_path / "m"


def _rewrite_npz(path: Path, change):
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(path.with_suffix(".npz"), **arrays)


def _eval(model, data):
    return ["evaluate", str(model), "--data", str(data)]


def test_model_missing_array(tmp_path, model, good_data):
    _rewrite_npz(model, lambda a: a.pop("net/dense2.b"))
    _fails(tmp_path, _eval(model, good_data), "dense2.b", "missing")


def test_model_wrong_shape(tmp_path, model, good_data):
    _rewrite_npz(model, lambda a: a.__setitem__("net/dense1.W", np.zeros((3072, 5), np.float32)))
    _fails(tmp_path, _eval(model, good_data), "dense1.W", "shape")


def test_model_wrong_dtype(tmp_path, model, good_data):
    _rewrite_npz(model, lambda a: a.__setitem__("net/dense1.b", np.zeros(4, np.int64)))
    _fails(tmp_path, _eval(model, good_data), "dense1.b", "dtype")


def test_model_newer_format_version(tmp_path, model, good_data):
    j = model.with_suffix(".json")
    meta = json.loads(j.read_text())
    meta["format_version"] = 7
    j.write_text(json.dumps(meta))
    _fails(tmp_path, _eval(model, good_data), "newer")


def test_model_with_pickled_object_is_refused(tmp_path, model, good_data):
    _rewrite_npz(model, lambda a: a.__setitem__("net/dense1.b", np.array([{"x": 1}], object)))
    _fails(tmp_path, _eval(model, good_data), "m.npz")


BN_HUGE = {
    "kind": "batchnorm",
    "d": 10**6,
    "alpha": 0.9,
    "eps": 1e-5,
    "running_init": "torch",
    "unbiased_running_var": False,
}


def _rewrite_layers(path: Path, change) -> None:
    j = path.with_suffix(".json")
    meta = json.loads(j.read_text())
    meta["layers"] = change(meta["layers"])
    j.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda layers: {"a": layers[0]}, "'layers' must be a list of objects"),
        (lambda layers: [1, 2, 3], "'layers' must be a list of objects"),
        (lambda layers: [{**layers[0], "d_out": 10**9}, *layers[1:]], "invalid layer sizes"),
        (lambda layers: [{**layers[0], "d_out": 400_000}, *layers[1:]], "bytes of weights"),
        (lambda layers: [*layers, *[BN_HUGE] * 40], "bytes of weights"),
        (lambda layers: [*layers, {**BN_HUGE, "d": 10, "unbiased_running_var": "no"}], "true or"),
    ],
    ids=[
        "layers-a-dict",
        "entries-not-objects",
        "d_out-1e9",
        "larger-than-the-file",
        "40-batch-norms-of-1e6",
        "a-string-for-a-bool",
    ],
)
def test_model_description_is_checked_before_allocating(
    tmp_path, model, good_data, change, pattern
):
    _rewrite_layers(model, change)
    _fails(tmp_path, _eval(model, good_data), pattern)


def test_model_with_other_input_size(tmp_path, good_data):
    net = Network.build(20, [4], 10, rng=np.random.default_rng(0))
    save_network(tmp_path / "m20", net, np.zeros(20), np.ones(20), tuple("abcdefghij"))
    _fails(tmp_path, _eval(tmp_path / "m20", good_data), "takes 20 flat features, but the data")


def test_model_whose_layer_sizes_do_not_chain(tmp_path, good_data):
    from mlplab.nn.layers import Dense

    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((3072, 8)), rng.standard_normal((9, 10))
    net = Network([Dense(W1.astype(np.float32)), Dense(W2.astype(np.float32))])
    save_network(tmp_path / "bad", net, np.zeros(3072), np.ones(3072), tuple("abcdefghij"))
    _fails(tmp_path, _eval(tmp_path / "bad", good_data), "sizes do not fit together")


def test_model_file_missing(tmp_path, good_data):
    _fails(tmp_path, _eval(tmp_path / "none", good_data), "not found")


# -- outputs -----------------------------------------------------------------------------------
def test_out_is_a_file(tmp_path, good_data):
    f = tmp_path / "afile"
    f.write_bytes(OLD)
    _fails(
        tmp_path,
        ["train", "--recipe", "assignment2/ex3", "--data", str(good_data), "--out", str(f)],
        "not a directory",
    )
    assert f.read_bytes() == OLD


def test_unwritable_out_dir(tmp_path, good_data):
    if os.geteuid() == 0:  # root ignores permission bits: use a place no one can write
        target = Path("/proc/mlplab-out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "out"
    _fails(
        tmp_path,
        ["train", "--recipe", "assignment2/ex3", "--data", str(good_data), "--out", str(target)],
        "cannot write to output directory",
    )


@pytest.mark.parametrize(("name", "make"), [("checkpoints", "file"), ("model.npz", "dir")])
def test_out_holds_a_file_where_a_directory_goes(tmp_path, good_data, name, make):
    """Found before training, not after it (the run would have been lost)."""
    out = tmp_path / "run"
    out.mkdir()
    target = out / name
    target.mkdir() if make == "dir" else target.write_bytes(OLD)
    args = ["train", "--recipe", "assignment2/ex3", "--data", str(good_data), "--out", str(out)]
    args += ["--quiet", "--set", "split=2/1", "--set", "batch_size=1", "--set", "n_s=2"]
    _fails(tmp_path, args, str(target), "choose another --out")
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        name
    ]  # the lock file stays


def test_finished_run_is_not_overwritten(tmp_path, good_data):
    out = _out(tmp_path)
    (out / "results.json").write_bytes(OLD)
    r = CliRunner().invoke(cli, _train(tmp_path, good_data), catch_exceptions=False)
    assert r.exit_code == 2 and "already holds a finished run" in r.stderr
    assert (out / "results.json").read_bytes() == OLD


def test_nan_input_to_estimator_is_rejected():
    from mlplab.errors import ConfigError
    from mlplab.train.estimator import MLPClassifier

    X = np.ones((10, 4))
    X[3, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        MLPClassifier().fit(X, np.arange(10) % 2)


def test_a_space_file_that_is_a_directory_is_refused(tmp_path):
    """A recipe's ``.space`` beside it that is not a file is an error, not ignored."""
    from mlplab.config import beside_recipe
    from mlplab.errors import ConfigError

    recipe = tmp_path / "r.toml"
    recipe.write_text("hidden = [8]\n")
    assert beside_recipe(str(recipe), ".space") is None
    (tmp_path / "r.space").mkdir()
    with pytest.raises(ConfigError, match="is not a readable file"):
        beside_recipe(str(recipe), ".space")
