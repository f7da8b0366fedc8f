"""kill -9 at many points, then --resume: weights and history bit-identical to a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_raw

RECIPES = {
    # momentum (optimiser state), batch norm (buffers), dropout + augmentation (generator)
    "stateful": """
split = "400/100"
hidden = [16, 12]
batch_norm = true
drop_prob = 0.1
flip = true
translate = 2
noise_std = 0.05
optimizer = "momentum"
lam = 0.001
batch_size = 20
n_s = 10
cycles = 2
snapshot_ensemble = true
keep_best = true
record_every = 5
checkpoint_every = 8
""",
    # plain SGD: the fused update path
    "fused": """
split = "400/100"
hidden = [16]
lam = 0.01
batch_size = 25
n_s = 16
cycles = 1
record_every = 4
checkpoint_every = 7
""",
}
KILLS = {
    "stateful": [
        "update:3",
        "checkpoint-start:8",
        "checkpoint-between:16",
        "checkpoint-end:24",
        "update:17",
        "update:39",
        "checkpoint-between:40",
    ],
    "fused": ["update:10", "checkpoint-between:14", "checkpoint-end:21"],
}


def write_binary_cifar(root: Path) -> Path:
    """A tiny cifar-10-batches-bin directory with learnable synthetic images."""
    raw = synthetic_raw(n_train=600, n_test=100)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)

    def records(x, y):
        return np.hstack([y.astype(np.uint8)[:, None], x]).tobytes()

    for i in range(5):
        sl = slice(120 * i, 120 * (i + 1))
        (d / f"data_batch_{i + 1}.bin").write_bytes(records(raw.x_train[sl], raw.y_train[sl]))
    (d / "test_batch.bin").write_bytes(records(raw.x_test, raw.y_test))
    (d / "batches.meta.txt").write_text("\n".join(raw.classes) + "\n")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_binary_cifar(root / "data")
    env = {**os.environ, "MLPLAB_CACHE": str(root / "cache")}
    env.pop("MLPLAB_KILL_AT", None)
    recipes = {}
    for name, text in RECIPES.items():
        recipes[name] = root / f"{name}.toml"
        recipes[name].write_text(text)
    refs = {}
    for name in RECIPES:
        out = root / f"ref-{name}"
        p = _mlplab(
            env, "train", "--recipe", str(recipes[name]), "--data", str(data), "--out", str(out)
        )
        assert p.returncode == 0, p.stderr
        refs[name] = out
    return root, data, env, recipes, refs


def _mlplab(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "mlplab.cli", *args, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_identical(out: Path, ref: Path):
    models = sorted(p.name for p in ref.glob("model*.npz"))
    assert models == sorted(p.name for p in out.glob("model*.npz"))
    for name in models:
        with np.load(out / name) as a, np.load(ref / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (out, ref))
    assert ra["history"] == rb["history"]
    for k in ("test_accuracy", "val_accuracy", "train_accuracy", "updates"):
        assert ra[k] == rb[k]


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "kill"), [(r, k) for r, ks in KILLS.items() for k in ks])
def test_kill_then_resume_is_bit_identical(setup, recipe, kill):
    root, data, env, recipes, refs = setup
    out = root / f"run-{recipe}-{kill.replace(':', '-')}"
    p = _mlplab(
        {**env, "MLPLAB_KILL_AT": kill},
        "train",
        "--recipe",
        str(recipes[recipe]),
        "--data",
        str(data),
        "--out",
        str(out),
    )
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not (out / "results.json").exists()
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 0, p.stderr
    _assert_identical(out, refs[recipe])


@pytest.mark.slow
def test_killed_twice_and_resumed_twice(setup):
    root, data, env, recipes, refs = setup
    out = root / "twice"
    p = _mlplab(
        {**env, "MLPLAB_KILL_AT": "update:12"},
        "train",
        "--recipe",
        str(recipes["stateful"]),
        "--data",
        str(data),
        "--out",
        str(out),
    )
    assert p.returncode == -signal.SIGKILL
    p = _mlplab({**env, "MLPLAB_KILL_AT": "checkpoint-between:32"}, "train", "--resume", str(out))
    assert p.returncode == -signal.SIGKILL
    assert _mlplab(env, "train", "--resume", str(out)).returncode == 0
    _assert_identical(out, refs["stateful"])


@pytest.mark.slow
def test_external_sigkill_at_a_random_moment(setup):
    root, data, env, _recipes, _refs = setup
    out = root / "external"
    slow = root / "slow.toml"  # long enough to be killed while training
    slow.write_text(RECIPES["stateful"].replace("n_s = 10", "n_s = 200"))
    ref = root / "ref-slow"
    assert (
        _mlplab(
            env, "train", "--recipe", str(slow), "--data", str(data), "--out", str(ref)
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlplab.cli",
            "train",
            "--recipe",
            str(slow),
            "--data",
            str(data),
            "--out",
            str(out),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not list((out / "checkpoints").glob("ckpt-*.json")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _mlplab(env, "train", "--resume", str(out)).returncode == 0
    _assert_identical(out, ref)


def test_resume_refuses_finished_or_missing_runs(setup, tmp_path):
    _root, _data, env, _recipes, refs = setup
    p = _mlplab(env, "train", "--resume", str(refs["fused"]))
    assert p.returncode == 2 and "already finished" in p.stderr
    p = _mlplab(env, "train", "--resume", str(tmp_path))
    assert p.returncode == 2 and "no run to resume" in p.stderr


def test_corrupt_newest_checkpoint_falls_back_to_older(tmp_path):
    from mlplab.train.checkpoint import latest_checkpoint, write_checkpoint

    a = {"x": np.arange(3)}
    write_checkpoint(tmp_path, {"step": 1}, a, keep=2)
    write_checkpoint(tmp_path, {"step": 2}, {"x": np.arange(4)}, keep=2)
    newest = tmp_path / "ckpt-000000002.npz"
    newest.write_bytes(newest.read_bytes()[:-10])  # torn write
    meta, arrays = latest_checkpoint(tmp_path)
    assert meta["step"] == 1
    np.testing.assert_array_equal(arrays["x"], a["x"])
