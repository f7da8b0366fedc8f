"""`mlplab export`: ONNX checked with onnxruntime, safetensors loaded into torch.nn.Sequential."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlplab.cli import cli
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network, save_network

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture(params=["plain", "batchnorm-dropout", "whitened-flip-averaged"])
def model(request, tmp_path):
    from helpers import synthetic_raw

    from mlplab.config import load_recipe
    from mlplab.train.run import run_experiment

    sets = {"split": "500/100", "n_s": "30", "batch_size": "25", "hidden": "24,16"}
    if request.param != "plain":
        sets |= {"batch_norm": "true", "drop_prob": "0.2", "init": "he"}
    if request.param == "whitened-flip-averaged":
        sets |= {"zca_eps": "1.0", "flip_average": "true"}
    cfg = load_recipe("assignment2/ex3", sets)
    raw = synthetic_raw(n_train=600, n_test=1000, noise=60.0)
    run_experiment(cfg, tmp_path / "run", raw=raw, progress=False)
    return tmp_path / "run", raw


@pytest.mark.slow
def test_onnx_agrees_with_mlplab_on_1000_images(model, tmp_path):
    run, raw = model
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(cli, ["export", str(run), "--format", "onnx", "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = load_network(run)
    sess = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    logits, probs = sess.run(["logits", "probabilities"], {"pixels": raw.x_test.astype(np.float32)})
    ref_probs = m.predict_proba(raw.x_test)  # flip-averaged where the model says so
    ref = m.network.logits(m.preprocess(raw.x_test)) if not m.flip_average else np.log(ref_probs)
    assert len(raw.x_test) == 1000
    assert (m.whiten is not None) == m.flip_average == (m.meta["config"]["zca_eps"] > 0)
    np.testing.assert_array_equal(logits.argmax(1), ref.argmax(1))
    assert np.abs(logits - ref).max() < 1e-4
    assert np.abs(probs - ref_probs).max() < 1e-5
    assert np.abs(probs.sum(1) - 1).max() < 1e-5
    meta = {p.key: p.value for p in __import__("onnx").load(out).metadata_props}
    assert json.loads(meta["classes"]) == list(m.classes)


@pytest.mark.slow
def test_safetensors_loads_into_torch_sequential(model, tmp_path):
    run, raw = model
    out = tmp_path / "m.safetensors"
    r = CliRunner().invoke(cli, ["export", str(run), "--format", "safetensors", "--out", str(out)])
    assert r.exit_code == 0, r.output
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        layers = json.loads(f.metadata()["layers"])
    modules = [getattr(torch.nn, d.pop("module"))(**d) for d in layers]
    net = torch.nn.Sequential(*modules).double().eval()
    state = safetensors_torch.load_file(str(out))
    mean, std = state.pop("mlplab.mean"), state.pop("mlplab.std")
    whiten = state.pop("mlplab.whiten", None)
    net.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    x = (torch.from_numpy(raw.x_test).double() / 255 - mean) / std
    if whiten is not None:
        x = x @ whiten.double()
    with torch.no_grad():
        got = net(x).numpy()
    m = load_network(run)
    assert (whiten is not None) == (m.whiten is not None)
    ref = m.network.logits(m.preprocess(raw.x_test))
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    assert np.abs(got - ref).max() < 1e-4


def test_export_bad_input(tmp_path):
    net = Network.build(3072, [4], 10, rng=np.random.default_rng(0))
    save_network(tmp_path / "m", net, np.zeros(3072), np.ones(3072), tuple("abcdefghij"))
    r = CliRunner().invoke(
        cli, ["export", str(tmp_path / "m"), "--format", "onnx", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2 and "is a directory" in r.stderr
    r = CliRunner().invoke(
        cli, ["export", str(tmp_path / "none"), "--format", "onnx", "--out", "x"]
    )
    assert r.exit_code == 2 and "not found" in r.stderr
