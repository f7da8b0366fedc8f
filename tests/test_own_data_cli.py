"""Own data from the command line, as a new user would try it: a folder of 24x24 grayscale
images trains with shipped recipes and every model tool follows its shape; an ``.npz`` of
scikit-learn's digits trains to the accuracy of scikit-learn's own network."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mlplab.cli import cli
from mlplab.nn.serialize import load_network

CLASSES = ("circle", "square", "stripes")


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _picture(k: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:24, :24]
    shape = [
        (yy - 12) ** 2 + (xx - 12) ** 2 < 40,
        (abs(yy - 12) < 6) & (abs(xx - 12) < 6),
        (xx // 3) % 2 == 1,
    ][k]
    return np.clip(shape * 200 + rng.normal(0, 60, (24, 24)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def gray_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("gray") / "shapes"
    rng = np.random.default_rng(0)
    for part, n in (("train", 120), ("test", 20)):
        for k, name in enumerate(CLASSES):
            d = root / part / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_picture(k, rng), "L").save(d / f"{i}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["assignment2/ex3", "assignment3/3layer-bn", "bonus/best"])
def test_a_grayscale_folder_trains_with_a_shipped_recipe(gray_folder, tmp_path, recipe):
    out = tmp_path / "run"
    short = ["--set", "n_s_k=10", "--set", "cycles=1"] if recipe != "assignment2/ex3" else []
    r = run(
        "train", "--recipe", recipe, "--data", str(gray_folder), "--set", "split=300/60",
        *short, "--out", str(out), "-q",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert res["test_accuracy"] > 0.6, res["test_accuracy"]  # chance: 1/3
    model = load_network(out / "model")
    assert model.image_shape.to_list() == [24, 24, 1] and model.network.d_in == 576
    assert model.classes == CLASSES


@pytest.mark.slow
def test_every_model_tool_follows_the_models_shape(gray_folder, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(gray_folder), "--set", "split=300/60", "--out", str(out), "-q"]
    assert run("train", "--recipe", "assignment2/ex3", *args).exit_code == 0
    # predict: an RGB picture of another size is converted to the model's 24x24 grayscale
    big = tmp_path / "circle.png"
    Image.fromarray(np.repeat(_picture(0, np.random.default_rng(5)), 3, axis=0)).convert(
        "RGB"
    ).resize((48, 48)).save(big)
    r = run("predict", str(out), str(big), str(gray_folder / "test/stripes/3.png"), "--json")
    assert r.exit_code == 0, r.output
    assert [p["class"] for p in json.loads(r.output)] == ["circle", "stripes"]
    r = run("evaluate", str(out), "--data", str(gray_folder), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["accuracy"] > 0.8
    r = run("weights", str(out), "--out", str(tmp_path / "w.png"))
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "w.png").size[0] > 100
    ort = pytest.importorskip("onnxruntime")
    r = run("export", str(out), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert r.exit_code == 0, r.output
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert sess.get_inputs()[0].shape == ["N", 576]
    rows = np.stack([_picture(k, np.random.default_rng(9)).reshape(-1) for k in range(3)])
    onnx_probs = sess.run(["probabilities"], {"pixels": rows.astype(np.float32)})[0]
    ours = load_network(out / "model").predict_proba(rows)
    np.testing.assert_allclose(onnx_probs, ours, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_an_npz_of_digits_trains_to_96_percent(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    np.savez(tmp_path / "digits.npz", x=digits.data, y=digits.target)
    accs = []
    for seed in (0, 1):
        out = tmp_path / f"d{seed}"
        r = run(
            "train", "--recipe", "assignment2/ex3", "--data", str(tmp_path / "digits.npz"),
            "--set", "split=1200/237", "--set", "n_s=200", "--set", "cycles=3",
            "--set", f"seed={seed}", "--out", str(out), "-q",
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        res = json.loads((out / "results.json").read_text())
        held_out = sum(round(0.2 * n) for n in np.bincount(digits.target))  # 20 % of each class
        assert res["n_test"] == held_out == 359
        accs.append(res["test_accuracy"])
    assert min(accs) >= 0.96, accs
    model = load_network(tmp_path / "d0" / "model")
    assert model.image_shape is None and model.scale == 1.0
    npz = str(tmp_path / "digits.npz")
    r = run("train", "--recipe", "assignment2/ex3", "--data", npz, "--set", "split=1200/237",
            "--set", "flip=true", "--out", str(tmp_path / "f"))  # fmt: skip
    assert r.exit_code == 2 and "flip needs images" in r.output
    r = run("train", "--recipe", "assignment2/ex3", "--data", npz, "--set", "split=1200/237",
            "--set", "flip_average=true", "--out", str(tmp_path / "fa"))  # fmt: skip
    assert r.exit_code == 2 and "flip_average needs images" in r.output
    assert not (tmp_path / "fa" / "run.json").exists()  # refused before the run wrote anything
