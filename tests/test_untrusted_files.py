"""Every file mlplab reads is untrusted, its own included.

The one JSON reader (:func:`mlplab.fileio.read_json`) refuses special files without blocking,
links out of the run directory, files over its size limit, nesting over its depth limit,
``NaN``/``Infinity``, invalid UTF-8; a checkpoint whose digests were recomputed after an
edit is checked against its schema before use (an ``n_snapshots`` of 1e9 would hang,
``"step": Infinity`` overflow). Hypothesis fuzzes the reader and the checkpoint check.
A run's default --out is ``runs/<name>`` made safe for a path.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_resume import _mlplab, setup  # noqa: F401
from test_rundir import _train, runs  # noqa: F401

import mlplab.nn.serialize as model_format
from mlplab import fileio
from mlplab.errors import MlplabError, ModelFileError
from mlplab.fileio import read_json
from mlplab.train.checkpoint import _meta_digest, check_meta

REASONS = {"syntax", "encoding", "number", "depth", "size", "special", "outside", "missing"}


def _no_hang(fn, seconds: float = 10.0):
    """``fn()``'s result or exception, failing (not hanging) if it blocks."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ------------------------------------------------------------------- the reader itself

BAD_TEXT = {
    "nan": (b'{"a": NaN}', "number", "non-finite number (NaN)"),
    "infinity": (b'{"step": Infinity}', "number", "non-finite number (Infinity)"),
    "minus-infinity": (b"[-Infinity]", "number", "non-finite number (-Infinity)"),
    "overflow": (b"[1e999]", "number", "non-finite number (1e999)"),
    "long-int": (b"1" * 5000, "number", "too long to read"),
    "deep-200000": (b"[" * 200_000 + b"]" * 200_000, "depth", "nests deeper than 64"),
    "deep-65": (b"[" * 65 + b"]" * 65, "depth", "nests deeper than 64"),
    "deep-dict": (b'{"a":' * 70 + b"1" + b"}" * 70, "depth", "nests deeper than 64"),
    "latin-1": ('{"name": "caf\xe9"}'.encode("latin-1"), "encoding", "not UTF-8"),
    "surrogate": (b'["\\ud800"]', "encoding", "not Unicode text"),
    "truncated": (b'{"a": [1, 2', "syntax", "not valid JSON"),
    "empty": (b"", "syntax", "not valid JSON"),
    "bom": (b'\xef\xbb\xbf{"a": 1}', "syntax", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_TEXT))
def test_reader_refuses_bad_text(tmp_path, case):
    data, reason, words = BAD_TEXT[case]
    path = tmp_path / "f.json"
    path.write_bytes(data)
    with pytest.raises(ModelFileError) as e:
        read_json(path, what="test file", error=ModelFileError)
    assert e.value.reason == reason and words in str(e.value)
    assert str(e.value).startswith(f"test file {path} ")


def test_reader_keeps_what_is_valid(tmp_path):
    path = tmp_path / "f.json"
    obj = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": -0.0, "d": 10**100}}
    path.write_text(json.dumps(obj))
    assert read_json(path) == obj
    deep = [[]]
    for _ in range(62):
        deep = [deep]
    path.write_text(json.dumps(deep))  # 64 levels: the limit itself
    assert read_json(path) == deep
    assert np.isnan(fileio.parse_json(b"[NaN]", allow_nan=True)[0])


def _special(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "f.json"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dev-zero-link":
        p.symlink_to("/dev/zero")
    elif kind == "dev-null":
        return Path("/dev/null")
    elif kind == "directory":
        p.mkdir()
    elif kind == "socket":
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
    return p


SPECIAL = {
    "fifo": "a FIFO",
    "dev-zero-link": "a character device",
    "dev-null": "a character device",
    "directory": "a directory",
    "socket": "a socket",
}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_reader_refuses_special_files_without_blocking(tmp_path, kind):
    path = _special(tmp_path, kind)
    with pytest.raises(MlplabError) as e:
        _no_hang(lambda: read_json(path, what="results"))
    assert e.value.reason == "special"
    assert f"is not a regular file ({SPECIAL[kind]})" in str(e.value)


def test_reader_limits_size_and_links(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("[" + "1," * 600 + "1]")
    with pytest.raises(MlplabError, match="over the limit of 1,000") as e:
        read_json(path, max_bytes=1000)
    assert e.value.reason == "size"
    run = tmp_path / "run"
    run.mkdir()
    (run / "inside.json").write_text("[1]")
    (run / "ok.json").symlink_to(run / "inside.json")
    assert read_json(run / "ok.json", base=run) == [1]
    (run / "out.json").symlink_to(path)
    with pytest.raises(MlplabError, match=r"leads out of .*run") as e:
        read_json(run / "out.json", base=run)
    assert e.value.reason == "outside"
    (run / "up.json").symlink_to("../f.json")
    with pytest.raises(MlplabError, match="leads out of"):
        read_json(run / "up.json", base=run)
    with pytest.raises(MlplabError, match="does not exist") as e:
        read_json(run / "missing.json")
    assert e.value.reason == "missing"


def test_model_json_and_npz_bomb(tmp_path, monkeypatch):
    model_format.save_model(tmp_path / "m", {"arch": "x"}, {"W": np.ones((2, 2))})
    (tmp_path / "m.json").write_text('{"format": ' * 100 + "1" + "}" * 100)
    with pytest.raises(ModelFileError, match="nests deeper than 64"):
        model_format.load_model_files(tmp_path / "m")
    model_format.save_model(tmp_path / "m", {"arch": "x"}, {"W": np.ones((2, 2))})
    npz = tmp_path / "m.npz"
    with zipfile.ZipFile(npz, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("extra.npy", b"\0" * (8 << 20))  # 8 MB that deflate to ~8 kB
    monkeypatch.setattr(fileio, "NPZ_INFLATE_BYTES", 1 << 20)
    assert npz.stat().st_size < 100_000
    with pytest.raises(ModelFileError, match=r"member 'extra.npy' would inflate from"):
        model_format.load_model_files(tmp_path / "m")


# ------------------------------------------------------------------------------ fuzzing

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
JSON = st.recursive(
    LEAVES,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    max_leaves=12,
)


def _finite_and_shallow(obj, depth=1) -> bool:
    if isinstance(obj, float):
        return np.isfinite(obj)
    if isinstance(obj, dict | list):
        items = obj.values() if isinstance(obj, dict) else obj
        return depth <= 64 and all(_finite_and_shallow(v, depth + 1) for v in items)
    return True


@FUZZ
@given(blob=st.binary(max_size=2048))
def test_fuzz_reader_on_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("j") / "f.json"
    path.write_bytes(blob)
    try:
        read_json(path, max_bytes=1024)
    except MlplabError as e:
        assert e.reason in REASONS and str(path) in str(e)


@FUZZ
@given(obj=JSON, wrap=st.integers(0, 80))
def test_fuzz_reader_on_json_trees(tmp_path_factory, obj, wrap):
    """Any tree (non-finite floats included), wrapped ``wrap`` lists deep: read back equal,
    or refused for its numbers or its depth."""
    for _ in range(wrap):
        obj = [obj]
    path = tmp_path_factory.mktemp("t") / "f.json"
    path.write_text(json.dumps(obj, allow_nan=True))
    try:
        got = read_json(path)
    except MlplabError as e:
        assert e.reason in ("number", "depth")
        assert e.reason == "depth" or not _finite_and_shallow(obj)
        return
    assert _finite_and_shallow(obj) and got == obj


def _trained_state():
    from mlplab.config import Config
    from mlplab.train.build import build_network
    from mlplab.train.trainer import Trainer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    cfg = Config(
        hidden=[5], batch_size=10, n_s=6, cycles=2, snapshot_ensemble=True, keep_best=True
    ).validate()

    def trainer():
        net = build_network(cfg, 12, 2, np.random.default_rng(1))
        return Trainer(net, cfg, np.random.default_rng(1), progress=False, image_shape=None)

    tr = trainer()
    tr.fit(X, y, X[:20], y[:20])
    meta, arrays = tr.state()
    return trainer, json.loads(json.dumps(meta)), arrays


TRAINER, META, ARRAYS = _trained_state()
KEYS = st.sampled_from(sorted(META)) | st.text(max_size=6)


def test_valid_state_passes_and_loads():
    assert META["n_snapshots"] == 2 and check_meta(META, ARRAYS) is None
    TRAINER().load_state(META, ARRAYS)


@FUZZ
@given(changes=st.lists(st.tuples(KEYS, st.none() | JSON), min_size=1, max_size=4))
def test_fuzz_checkpoint_meta(changes):
    """Random values (or deletions, ``None``) for random keys: the check either names a
    problem or the trainer loads the state without an error."""
    meta = json.loads(json.dumps(META))
    for key, value in changes:
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    problem = check_meta(meta, ARRAYS)
    if problem is None:
        TRAINER().load_state(meta, ARRAYS)
    else:
        assert isinstance(problem, str) and problem


POINT = st.dictionaries(st.sampled_from(sorted(META["history"][0])), LEAVES, max_size=8)


@FUZZ
@given(
    history=st.lists(POINT, max_size=5) | JSON,
    n=st.integers(-3, 10**12) | st.floats(),
    step=st.integers(-3, 10**20) | st.floats() | st.text(max_size=3),
)
def test_fuzz_checkpoint_fields_that_once_hung_or_crashed(history, n, step):
    meta = {**META, "history": history, "n_snapshots": n, "step": step}
    if check_meta(meta, ARRAYS) is None:
        TRAINER().load_state(meta, ARRAYS)


# --------------------------------------------- edited checkpoints and run.json, end to end


@pytest.fixture(scope="module")
def b_killed(runs):  # noqa: F811
    """Run B killed at update 9 (its checkpoint: update 7)."""
    d, data, env, _ref_b = runs
    out = d / "b-killed"
    assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9").returncode < 0
    return out


CKPT = "checkpoints/ckpt-000000007.json"


def _rehash(change):
    def edit(path: Path) -> None:
        meta = change(json.loads(path.read_text()))
        meta["sha256"] = _meta_digest(meta)
        path.write_text(json.dumps(meta, allow_nan=True))

    return edit


def _text(text: str):
    return lambda path: path.write_text(text)


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _link(target: str):
    def edit(path: Path) -> None:
        path.unlink()
        path.symlink_to(target)

    return edit


EDITS = {
    "step-infinity": (CKPT, _rehash(lambda m: {**m, "step": float("inf")}), "non-finite"),
    "step-huge": (CKPT, _rehash(lambda m: {**m, "step": 10**30}), "'step' must be a whole"),
    "step-float": (CKPT, _rehash(lambda m: {**m, "step": 7.0}), "'step' must be a whole"),
    "n-snapshots-1e9": (CKPT, _rehash(lambda m: {**m, "n_snapshots": 1e9}), "'n_snapshots'"),
    "n-snapshots-int": (CKPT, _rehash(lambda m: {**m, "n_snapshots": 10**9}), "'n_snapshots' is"),
    "best-score": (CKPT, _rehash(lambda m: {**m, "best_score": "high"}), "'best_score'"),
    "history-int": (CKPT, _rehash(lambda m: {**m, "history": 5}), "'history' must be a list"),
    "history-items": (CKPT, _rehash(lambda m: {**m, "history": [1, 2]}), "every 'history'"),
    "seconds": (CKPT, _rehash(lambda m: {**m, "seconds": -1}), "'seconds'"),
    "rng": (CKPT, _rehash(lambda m: {**m, "rng_state": [1]}), "'rng_state'"),
    "ckpt-deep": (CKPT, _text('{"format": "mlplab-checkpoint", "h": ' + "[" * 10**5), "deeper"),
    "ckpt-fifo": (CKPT, _fifo, "(a FIFO)"),
    "ckpt-dev-zero": (CKPT, _link("/dev/zero"), "leads out of"),
    "npz-dev-zero": (CKPT.replace(".json", ".npz"), _link("/dev/zero"), "(to /dev/zero)"),
    "npz-fifo": (CKPT.replace(".json", ".npz"), _fifo, "(a FIFO)"),
    "ckpt-huge": (CKPT, _bytes(b" " * (65 << 20)), "over the limit of 67,108,864"),
    "ckpt-outside": (CKPT, _link("/etc/hostname"), "leads out of"),
    "run-deep": ("run.json", _text('{"config": ' * 5000), "nests deeper than 64"),
    "run-huge": ("run.json", _text(" " * (2 << 20)), "over the limit of 1,048,576"),
    "run-outside": ("run.json", _link("/etc/hostname"), "leads out of"),
    "run-nan": ("run.json", _text('{"config": {"lam": NaN}}'), "non-finite number (NaN)"),
    "run-fifo": ("run.json", _fifo, "(a FIFO)"),
    "run-list": ("run.json", _text("[1, 2]"), "is damaged: not a JSON object"),
    "run-latin1": ("run.json", _bytes(b'{"data_dir": "caf\xe9"}'), "not UTF-8"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EDITS))
def test_hostile_checkpoint_or_run_json_is_one_error_line(runs, b_killed, tmp_path, case):  # noqa: F811
    _d, _data, env, _ref_b = runs
    out = tmp_path / "out"
    shutil.copytree(b_killed, out)
    name, edit, words = EDITS[case]
    edit(out / name)
    p = _mlplab(env, "train", "--resume", str(out))  # (timeout: 120 s; these take ~2 s)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr


@pytest.mark.slow
def test_huge_n_snapshots_stops_promptly_on_sigterm_or_never_starts(runs, b_killed, tmp_path):  # noqa: F811
    """The checkpoint that once hung (SIGTERM could not stop it) is refused before loading."""
    _d, _data, env, _ref_b = runs
    out = tmp_path / "out"
    shutil.copytree(b_killed, out)
    _rehash(lambda m: {**m, "n_snapshots": 10**9})(out / CKPT)
    cmd = [sys.executable, "-m", "mlplab.cli", "train", "--resume", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        raise AssertionError("hung") from None
    assert proc.returncode == 2 and b"'n_snapshots' is 1000000000" in err


# ------------------------------------------------------------------ the default --out


@pytest.mark.parametrize(
    ("name", "where"),
    [("..", "run"), ("../../etc", "-..-etc"), ("a$b<c>\nd", "a$b<c>-d"), ("x/y", "x-y")],
)
def test_default_out_is_one_safe_directory_under_runs(runs, tmp_path, name, where):  # noqa: F811
    d, data, env, _ref_b = runs
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "mlplab.cli", "train", "--recipe", str(d / "b.toml")]
    cmd += ["--data", str(data), "--set", f"name={name}", "--quiet"]
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(q.name for q in cwd.iterdir()) == ["runs"]
    assert [q.name for q in (cwd / "runs").iterdir()] == [where]
    res = json.loads((cwd / "runs" / where / "results.json").read_text())
    assert res["name"] == name
    assert (cwd / "runs" / where / "curves.png").is_file()


def test_checkpoint_npz_inflation_is_refused(tmp_path):
    from mlplab.train.checkpoint import latest_checkpoint, write_checkpoint

    write_checkpoint(tmp_path, META, {**ARRAYS})
    npz = next(tmp_path.glob("*.npz"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with zipfile.ZipFile(npz) as old:
            for n in old.namelist():
                z.writestr(n, old.read(n))
        z.writestr("bomb.npy", b"\0" * (70 << 20))
    body = {
        k: v
        for k, v in json.loads(next(tmp_path.glob("*.json")).read_text()).items()
        if k not in ("sha256",)
    }
    import hashlib

    npz.write_bytes(buf.getvalue())
    body["npz_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    body["sha256"] = _meta_digest(body)
    next(tmp_path.glob("*.json")).write_text(json.dumps(body))
    with pytest.raises(ModelFileError, match=r"'bomb\.npy' would inflate"):
        latest_checkpoint(tmp_path)
