"""Run directories: one owner, checkpoints that belong to their run, faults and signals.

Every case here broke on the previous main: a stale checkpoint resumed into a new run, two
processes on one --out, an edited checkpoint or run.json accepted, SIGTERM without a
checkpoint, a full disk ending in a traceback.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_resume import RECIPES, _assert_identical, _mlplab, setup  # noqa: F401

B = RECIPES["fused"].replace("lam = 0.01", "lam = 0.05")  # another run: checkpoints at 7, 14
A = RECIPES["fused"].replace("n_s = 16", "n_s = 100")  # a long one: checkpoint every 7


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):  # noqa: F811
    _root, data, env, _recipes, _refs = setup
    d = tmp_path_factory.mktemp("rundir")
    (d / "a.toml").write_text(A)
    (d / "b.toml").write_text(B)
    ref_b = d / "ref-b"
    p = _mlplab(
        env, "train", "--recipe", str(d / "b.toml"), "--data", str(data), "--out", str(ref_b)
    )
    assert p.returncode == 0, p.stderr
    return d, data, env, ref_b


@pytest.fixture(scope="module")
def ref_a(runs):
    """Run A trained without interruption."""
    d, data, env, _ref_b = runs
    out = d / "ref-a"
    p = _train(env, d / "a.toml", data, out)
    assert p.returncode == 0, p.stderr
    return out


def _train(env, recipe, data, out, **extra_env):
    args = ["train", "--recipe", str(recipe), "--data", str(data), "--out", str(out)]
    return _mlplab({**env, **extra_env}, *args)


@pytest.mark.slow
def test_new_run_sets_an_old_runs_checkpoints_aside(runs, ref_a, tmp_path):
    """Run B starts where run A was interrupted and is killed before its first checkpoint:
    A's checkpoints are not B's, and --resume gives A back and finishes it (the start
    that replaced it never became safe)."""
    d, data, env, _ref_b = runs
    out = tmp_path / "out"
    p = _train(env, d / "a.toml", data, out, MLPLAB_KILL_AT="update:30")  # leaves ckpt-28
    assert p.returncode == -signal.SIGKILL
    saved = sorted((out / "checkpoints").glob("ckpt-*"))
    assert [c.name for c in saved] == ["ckpt-000000028.json", "ckpt-000000028.npz"]
    kept = tmp_path / "a-ckpt"
    shutil.copytree(out / "checkpoints", kept)
    (out / "checkpoints" / ".ckpt-000000035.npz.abc.tmp").write_bytes(b"torn")  # killed write
    p = _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:5")  # before B's first
    assert p.returncode == -signal.SIGKILL
    assert not list((out / "checkpoints").iterdir())  # A's checkpoint is not B's
    assert json.loads((out / ".previous" / "run.json").read_text())["config"]["n_s"] == 100
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 0, p.stderr
    assert "stopped before its first checkpoint: the run it replaced is back" in p.stderr
    assert not (out / ".previous").exists()
    _assert_identical(out, ref_a)

    # a checkpoint of another run planted in the directory is refused, not resumed
    p = _train(env, d / "b.toml", data, tmp_path / "b2", MLPLAB_KILL_AT="update:9")
    assert p.returncode == -signal.SIGKILL
    for f in (tmp_path / "b2" / "checkpoints").iterdir():
        f.unlink()
    for f in kept.iterdir():
        shutil.copy(f, tmp_path / "b2" / "checkpoints" / f.name)
    p = _mlplab(env, "train", "--resume", str(tmp_path / "b2"))
    assert p.returncode == 2 and "belongs to another run" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_resume_with_other_data_is_refused(runs, setup, tmp_path):  # noqa: F811
    from test_resume import write_binary_cifar

    d, data, env, _ref = runs
    out = tmp_path / "out"
    p = _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9")
    assert p.returncode == -signal.SIGKILL
    for at in (0, 5 * 3073 + 100):  # another label; one pixel of image 5 (not sampled)
        other = write_binary_cifar(tmp_path / f"other{at}")
        blob = other / "cifar-10-batches-bin" / "data_batch_1.bin"
        raw = bytearray(blob.read_bytes())
        raw[at] = (raw[at] + 1) % 10
        blob.write_bytes(bytes(raw))
        p = _mlplab(env, "train", "--resume", str(out), "--data", str(other))
        assert p.returncode == 2 and "belongs to another run" in p.stderr, at


def _background(env, recipe, data, out):
    cmd = [
        sys.executable,
        "-m",
        "mlplab.cli",
        "train",
        "--recipe",
        str(recipe),
        "--data",
        str(data),
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list((out / "checkpoints").glob("ckpt-*.json")) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


def test_two_processes_on_one_directory(runs, tmp_path):
    d, data, env, _ref = runs
    slow = tmp_path / "slow.toml"
    slow.write_text(A.replace("n_s = 100", "n_s = 2000"))
    out = tmp_path / "out"
    proc = _background(env, slow, data, out)
    try:
        for args in (
            [
                "train",
                "--recipe",
                str(d / "b.toml"),
                "--data",
                str(data),
                "--out",
                str(out),
                "--overwrite",
            ],
            ["train", "--resume", str(out)],
        ):
            p = _mlplab(env, *args)
            assert p.returncode == 2, p.stderr
            assert (
                p.stderr.strip() == f"error: {out} is in use by process {proc.pid}; wait "
                "for it to finish"
            )
        assert json.loads((out / "run.json").read_text())["config"]["n_s"] == 2000
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_is_identical(runs, setup, tmp_path):  # noqa: F811
    _root, data, env, _recipes, _refs = setup
    d = runs[0]
    slow = tmp_path / "slow.toml"
    slow.write_text(RECIPES["stateful"].replace("n_s = 10", "n_s = 300"))
    ref = tmp_path / "ref"
    assert _train(env, slow, data, ref).returncode == 0
    out = tmp_path / "out"
    proc = _background(env, slow, data, out)
    proc.send_signal(signal.SIGTERM)
    _stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted at update ") and line.endswith(
        f"(checkpoint written); continue with: mlplab train --resume {out}"
    )
    step = int(line.split()[3])
    assert (out / "checkpoints" / f"ckpt-{step:09d}.json").is_file()
    assert _mlplab(env, "train", "--resume", str(out)).returncode == 0
    _assert_identical(out, ref)
    assert d.is_dir()


@pytest.mark.slow
def test_full_disk_mid_run_then_resume(runs, tmp_path):
    d, data, env, ref_b = runs
    out = tmp_path / "out"
    p = _train(env, d / "b.toml", data, out, MLPLAB_FAIL_AT="checkpoint-start:14")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"error: cannot write checkpoint of update 14: No space left on device; the last good "
        f"checkpoint is kept: free space and continue with: mlplab train --resume {out}"
    ]
    assert [c.name for c in (out / "checkpoints").glob("*.json")] == ["ckpt-000000007.json"]
    assert _mlplab(env, "train", "--resume", str(out)).returncode == 0
    _assert_identical(out, ref_b)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: [m],  # top-level list
        lambda m: {**m, "format_version": "abc"},
        lambda m: {**m, "history": 5},
        lambda m: {**m, "step": 10**9},
        lambda m: {**m, "step": -5},
        lambda m: {**m, "rng_state": {"bit_generator": "nope"}},
        lambda m: {**m, "format_version": 99},  # not "written by a newer mlplab": edited
    ],
)
@pytest.mark.slow
def test_edited_checkpoint_json_is_not_used(runs, tmp_path, edit):
    """The JSON is covered by the checkpoint's hash: an edited one is ignored (the run then
    resumes from its start) and the run still ends bit-identical."""
    d, data, env, ref_b = runs
    out = tmp_path / "out"
    p = _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9")
    assert p.returncode == -signal.SIGKILL
    path = out / "checkpoints" / "ckpt-000000007.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 0, p.stderr
    _assert_identical(out, ref_b)


@pytest.mark.parametrize(("key", "value"), [("seed", 1.5), ("hidden", "16"), ("lam", "x")])
def test_edited_run_json_is_refused(runs, tmp_path, key, value):
    d, data, env, _ref = runs
    out = tmp_path / "out"
    assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9").returncode < 0
    info = json.loads((out / "run.json").read_text())
    info["config"][key] = value
    (out / "run.json").write_text(json.dumps(info))
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 2
    assert p.stderr.startswith(f"error: {out / 'run.json'} is damaged: recipe key '{key}' expects")


def _rewrite_checkpoint(ckpt_dir: Path, change) -> None:
    """Change a checkpoint's arrays and write it again with fresh, valid digests."""
    from mlplab.train.checkpoint import latest_checkpoint, write_checkpoint

    meta, arrays = latest_checkpoint(ckpt_dir)
    change(arrays)
    body = {
        k: v
        for k, v in meta.items()
        if k not in ("format", "format_version", "npz_sha256", "sha256")
    }
    write_checkpoint(ckpt_dir, body, arrays)


def test_checkpoint_with_valid_digests_but_a_bad_permutation(runs, tmp_path):
    d, data, env, _ref = runs
    out = tmp_path / "out"
    assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9").returncode < 0

    def bad(arrays):
        arrays["perm"][0] = 10**6  # np.take(mode="clip") would silently use the last row

    _rewrite_checkpoint(out / "checkpoints", bad)
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 2 and "'perm' is not a permutation" in p.stderr


@pytest.mark.slow
def test_checkpoint_with_valid_digests_but_an_object_array_is_not_loaded(runs, tmp_path):
    import numpy as np

    d, data, env, ref_b = runs
    out = tmp_path / "out"
    assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9").returncode < 0
    _rewrite_checkpoint(
        out / "checkpoints", lambda a: a.__setitem__("perm", np.array([{}], object))
    )
    p = _mlplab(env, "train", "--resume", str(out))  # never unpickled: the run starts again
    assert p.returncode == 0, p.stderr
    _assert_identical(out, ref_b)


@pytest.mark.slow
def test_a_start_that_fails_leaves_out_as_it_was(runs, ref_a, tmp_path):
    """An unfinished run A in --out; run B starts there and diverges at once: A's run.json
    and checkpoint are back, byte for byte, and A resumes to the end."""
    d, data, env, _ref = runs
    out = tmp_path / "out"
    assert _train(env, d / "a.toml", data, out, MLPLAB_KILL_AT="update:30").returncode < 0

    def files() -> dict[Path, bytes]:  # (the lock's own bookkeeping aside)
        skip = {".lock", ".owner"}
        return {
            p.relative_to(out): p.read_bytes()
            for p in out.rglob("*")
            if p.is_file() and p.name not in skip
        }

    before = files()
    bad = tmp_path / "diverges.toml"
    bad.write_text(
        B.replace("n_s = 16\ncycles = 1\n", 'schedule = "constant"\neta = 1e9\nepochs = 2\n')
    )
    p = _train(env, bad, data, out)
    assert p.returncode == 2 and "non-finite" in p.stderr, p.stderr
    assert files() == before
    assert _mlplab(env, "train", "--resume", str(out)).returncode == 0
    _assert_identical(out, ref_a)


@pytest.mark.slow
def test_early_stopping_resumes_bit_identical(runs, tmp_path):
    """The early-stopping state (best score, its step, the stale count) is checkpointed
    without keep_best too: a killed run stops at the same update as an uninterrupted one."""
    _d, data, env, _ref = runs
    recipe = tmp_path / "es.toml"
    recipe.write_text(
        RECIPES["fused"]
        .replace("n_s = 16", "n_s = 300")
        .replace("record_every = 4", "record_every = 10\nearly_stop = 3")
    )
    ref = tmp_path / "ref"
    assert _train(env, recipe, data, ref).returncode == 0
    res = json.loads((ref / "results.json").read_text())
    assert res["stopped_early"] and res["updates"] < 600
    kill = res["best_val_step"] + 15  # after the best point, before the stop
    out = tmp_path / "out"
    assert _train(env, recipe, data, out, MLPLAB_KILL_AT=f"update:{kill}").returncode < 0
    assert _mlplab(env, "train", "--resume", str(out)).returncode == 0
    _assert_identical(out, ref)
    assert json.loads((out / "results.json").read_text())["best_val_step"] == res["best_val_step"]


@pytest.mark.parametrize("value", [123, ["a"], ""])
def test_run_json_data_dir_is_checked(runs, tmp_path, value):
    d, data, env, _ref = runs
    out = tmp_path / "out"
    assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9").returncode < 0
    info = json.loads((out / "run.json").read_text())
    info["data_dir"] = value
    (out / "run.json").write_text(json.dumps(info))
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"error: {out / 'run.json'} is damaged: data_dir must be a directory name: {value!r}"
    ]


def test_run_directory_that_cannot_be_locked(tmp_path):
    from mlplab.errors import MlplabError
    from mlplab.train.rundir import owned

    (tmp_path / "file").write_text("x")
    with pytest.raises(MlplabError, match="cannot lock run directory"):
        with owned(tmp_path / "file"):
            pass
