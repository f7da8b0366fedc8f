"""`mlplab predict` on image files and `mlplab evaluate`'s per-class accuracy and confusion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_data_loaders import CLASSES, write_bin

from mlplab.cli import cli
from mlplab.data import load_cifar10, to_hwc
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network, save_network
from mlplab.train.inspect import confusion_matrix, predict_files


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "cifar-10-batches-bin"
    write_bin(data)
    raw = load_cifar10(data, progress=False)
    net = Network.build(3072, [16], 10, rng=np.random.default_rng(0))
    mean = raw.x_train.mean(0) / 255
    save_network(tmp_path / "m", net, mean, np.full(3072, 0.25), CLASSES)
    return tmp_path, data, raw, load_network(tmp_path / "m")


def _png(path: Path, row: np.ndarray, size: tuple[int, int] | None = None) -> Path:
    im = Image.fromarray(to_hwc(row[None])[0])
    (im.resize(size, Image.Resampling.NEAREST) if size else im).save(path)
    return path


def test_predict_a_32x32_image_is_the_models_own_prediction(setup):
    tmp, _data, raw, model = setup
    files = [_png(tmp / f"t{i}.png", raw.x_test[i]) for i in range(len(raw.x_test))]
    rows = predict_files(model, files, top=4)
    probs = model.network.predict_proba(model.preprocess(raw.x_test))
    for r, p in zip(rows, probs, strict=True):
        assert r["class"] == CLASSES[int(p.argmax())] and r["probability"] == pytest.approx(p.max())
        assert [c for c, _ in r["top"]] == [CLASSES[i] for i in np.argsort(-p, kind="stable")[:4]]
        assert [q for _, q in r["top"]] == sorted((q for _, q in r["top"]), reverse=True)


def test_predict_cli_any_size_json_and_bad_files(setup):
    tmp, _data, raw, _model = setup
    big = _png(tmp / "big.png", raw.x_test[0], (320, 200))  # cropped to 200x200, resized
    r = CliRunner().invoke(cli, ["predict", str(tmp / "m"), str(big), "--json", "--top", "2"])
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.output)
    assert set(row) == {"file", "class", "probability", "top"} and len(row["top"]) == 2
    assert row["file"] == str(big) and row["class"] == row["top"][0][0]
    r = CliRunner().invoke(cli, ["predict", str(tmp / "m"), str(big)])
    assert r.exit_code == 0 and r.output.startswith(f"{big}: ") and r.output.count("%") == 3
    bad = tmp / "notes.jpg"
    bad.write_text("not an image")
    r = CliRunner().invoke(cli, ["predict", str(tmp / "m"), str(big), str(bad)])
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        f"error: {bad}: not a readable image file (cannot identify image file {str(bad)!r})"
    ]
    r = CliRunner().invoke(cli, ["predict", str(tmp / "m"), str(big), "--top", "11"])
    assert r.exit_code == 2 and "--top must be in 1..10" in r.stderr
    r = CliRunner().invoke(cli, ["predict", str(tmp / "none"), str(big)])
    assert r.exit_code == 2 and "not found" in r.stderr


def test_evaluate_per_class_and_confusion(setup):
    tmp, data, raw, model = setup
    fig = tmp / "conf.png"
    args = ["evaluate", str(tmp / "m"), "--data", str(data), "--json", "--confusion", str(fig)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    pred = model.network.predict_proba(model.preprocess(raw.x_test)).argmax(1)
    conf = np.array(res["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == res["n"] == len(raw.y_test)
    assert conf.trace() / res["n"] == pytest.approx(res["accuracy"])
    assert res["accuracy"] == pytest.approx(np.mean(pred == raw.y_test))
    for k in range(10):
        mask = raw.y_test == k
        if not mask.any():  # no test image of class k: no accuracy to report
            assert res["per_class_accuracy"][k] is None
            continue
        assert res["per_class_accuracy"][k] == pytest.approx(np.mean(pred[mask] == k))
    assert fig.stat().st_size > 10_000 and Image.open(fig).format == "PNG"


def test_confusion_matrix_by_hand():
    c = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
    assert c.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    from mlplab.train.inspect import per_class_accuracy

    absent = confusion_matrix(np.array([0, 0, 2]), np.array([0, 1, 2]), 3)  # no class 1
    assert per_class_accuracy(absent) == [0.5, None, 1.0]


def test_results_json_holds_the_test_breakdown(tmp_path):
    from helpers import synthetic_raw

    from mlplab.config import load_recipe
    from mlplab.train.run import run_experiment

    cfg = load_recipe("assignment2/ex3", {"split": "400/100", "n_s": "20", "batch_size": "20"})
    res = run_experiment(cfg, tmp_path / "run", raw=synthetic_raw(), progress=False)
    conf = np.array(res["test_confusion"])
    assert conf.shape == (10, 10) and conf.sum() == res["n_test"]
    assert conf.trace() / conf.sum() == pytest.approx(res["test_accuracy"])
    assert len(res["test_per_class_accuracy"]) == 10
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_confusion"] == res["test_confusion"]


@pytest.mark.slow
def test_weights_gallery_and_compare(setup, tmp_path):
    from helpers import synthetic_raw

    from mlplab.config import load_recipe
    from mlplab.train.inspect import first_layer_images, misclassified
    from mlplab.train.run import run_experiment

    tmp, data, raw, model = setup
    images, labels = first_layer_images(model)
    W = model.network.layers[0].params["W"]
    assert images.shape == (16, 32, 32, 3) and labels[0] == "unit 0"
    assert images.min() == 0 and images.max() == 1
    np.testing.assert_allclose(  # unit 3's red plane is its first 1024 weights, rescaled
        images[3, :, :, 0].reshape(-1),
        (W[:1024, 3] - W[:, 3].min()) / (W[:, 3].max() - W[:, 3].min()),
        rtol=1e-6,
    )
    pics, marks = misclassified(model, raw.x_test, raw.y_test, count=30)
    pred = model.network.predict_proba(model.preprocess(raw.x_test)).argmax(1)
    assert len(pics) == len(marks) == min(30, int(np.sum(pred != raw.y_test)))
    assert all(" → " in m and m.split(" → ")[0] != m.split(" → ")[1] for m in marks)
    r = CliRunner().invoke(cli, ["weights", str(tmp / "m"), "--out", str(tmp / "w.png")])
    assert r.exit_code == 0 and "(16 units)" in r.output and (tmp / "w.png").stat().st_size > 5000
    r = CliRunner().invoke(
        cli,
        ["evaluate", str(tmp / "m"), "--data", str(data), "--misclassified", str(tmp / "g.png")],
    )
    assert r.exit_code == 0 and (tmp / "g.png").is_file()
    runs = []
    for name, hidden in (("a", "8"), ("b", "8,8")):
        cfg = load_recipe(
            "assignment2/ex3",
            {"split": "400/100", "n_s": "20", "batch_size": "20", "hidden": hidden, "name": name},
        )
        run_experiment(cfg, tmp_path / name, raw=synthetic_raw(), progress=False)
        runs.append(str(tmp_path / name))
    r = CliRunner().invoke(cli, ["compare", *runs, "--out", str(tmp / "c.png")])
    assert r.exit_code == 0 and (tmp / "c.png").stat().st_size > 5000
    r = CliRunner().invoke(cli, ["compare", str(tmp / "m.json"), "--out", str(tmp / "c2.png")])
    assert r.exit_code == 2 and "not the results.json of a run" in r.stderr
