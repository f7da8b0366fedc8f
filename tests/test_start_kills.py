"""A new run keeps what it replaces until it is safe, even when killed at any step of its start.

Run A is interrupted (checkpoint of update 28); run B starts in the same --out and is killed
with SIGKILL (``MLPLAB_KILL_AT``) at each step of its start: the journal published, each
file set aside, its run.json written, training before its first checkpoint, that checkpoint
half written, complete, committed. ``--resume`` then finishes A bit-identically while B has
no complete checkpoint, and B once it has. Leftovers and planted files (``.previous`` that is
a file, a link or holds strangers; ``.owner`` that is a link or a FIFO) are one error line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from test_resume import _assert_identical, _mlplab, setup  # noqa: F401
from test_rundir import _train, ref_a, runs  # noqa: F401

#: kill point of B's start -> the run that --resume finishes ("a": A back, "b": B stays)
KILLS = {
    "start-journal:0": "a",  # .previous published with its journal, nothing moved yet
    "start-moved:1": "a",  # A's run.json set aside
    "start-moved:2": "a",  # A's checkpoints set aside too
    "start-run-json:0": "a",  # B's run.json written
    "update:5": "a",  # B trains, no checkpoint yet
    "checkpoint-start:7": "a",
    "checkpoint-between:7": "a",  # B's first .npz written, its .json not
    "checkpoint-end:7": "b",  # B's first checkpoint complete, A not yet deleted
    "start-commit:0": "b",  # A renamed for deletion, not deleted yet
    "update:9": "b",
}


@pytest.fixture(scope="module")
def a_killed(runs):  # noqa: F811
    """Run A killed at update 30 (its checkpoint: update 28), kept as a template."""
    d, data, env, _ref_b = runs
    out = d / "a-killed"
    p = _train(env, d / "a.toml", data, out, MLPLAB_KILL_AT="update:30")
    assert p.returncode == -signal.SIGKILL
    assert [c.name for c in (out / "checkpoints").glob("*.json")] == ["ckpt-000000028.json"]
    return out


def _copy(a_killed: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(a_killed, out, symlinks=True)
    return out


def _files(out: Path) -> dict[str, bytes]:
    """Every file of ``out`` but the lock's own bookkeeping."""
    skip = {".lock", ".owner"}
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name not in skip
    }


@pytest.mark.slow
@pytest.mark.parametrize("kill", sorted(KILLS))
def test_kill_at_each_step_of_a_start_then_resume(runs, ref_a, a_killed, tmp_path, kill):  # noqa: F811
    d, data, env, ref_b = runs
    out = _copy(a_killed, tmp_path)
    before = _files(out)
    p = _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT=kill)
    assert p.returncode == -signal.SIGKILL, p.stderr
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 0, p.stderr
    if KILLS[kill] == "a":
        moved = kill != "start-journal:0"  # (nothing had moved: nothing to say)
        assert ("the run it replaced is back" in p.stderr) == moved, p.stderr
        _assert_identical(out, ref_a)
    else:
        assert "note:" not in p.stderr
        _assert_identical(out, ref_b)
    assert not [q.name for q in out.iterdir() if q.name.startswith(".previous")]
    assert before  # (A's files were there to lose)


@pytest.mark.slow
def test_killed_twice_while_starting_and_once_while_restoring(runs, ref_a, a_killed, tmp_path):  # noqa: F811
    """Two starts killed one after the other, then a resume killed while it puts A back:
    the next resume still finishes A."""
    d, data, env, _ref_b = runs
    out = _copy(a_killed, tmp_path)
    for kill in ("start-moved:1", "update:5"):
        assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT=kill).returncode < 0
    p = _mlplab({**env, "MLPLAB_KILL_AT": "restore:1"}, "train", "--resume", str(out))
    assert p.returncode == -signal.SIGKILL
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 0, p.stderr
    _assert_identical(out, ref_a)


@pytest.mark.slow
def test_a_new_start_after_a_killed_one_replaces_the_first_run(runs, a_killed, tmp_path):  # noqa: F811
    """B killed while starting, then B started again and finished: B's results, and
    nothing of A or of the killed start is left."""
    d, data, env, ref_b = runs
    out = _copy(a_killed, tmp_path)
    assert _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:5").returncode < 0
    p = _train(env, d / "b.toml", data, out)
    assert p.returncode == 0, p.stderr
    assert "the run it replaced is back" in p.stderr  # then set aside again, and committed
    _assert_identical(out, ref_b)
    assert not [q.name for q in out.iterdir() if q.name.startswith(".previous")]


@pytest.mark.slow
def test_full_disk_while_setting_aside_leaves_out_as_it_was(runs, a_killed, tmp_path):  # noqa: F811
    d, data, env, _ref_b = runs
    out = _copy(a_killed, tmp_path)
    before = _files(out)
    p = _train(env, d / "b.toml", data, out, MLPLAB_FAIL_AT="start-moved:1")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], p.stderr
    assert _files(out) == before
    assert not [q.name for q in out.iterdir() if q.name.startswith(".previous")]


@pytest.mark.slow
def test_finished_run_overwritten_by_a_killed_start_is_kept(runs, ref_a, tmp_path):  # noqa: F811
    """A finished run, --overwrite started in its directory and killed before the first
    checkpoint: every file of the finished run is back, byte for byte."""
    d, data, env, _ref_b = runs
    out = tmp_path / "out"
    shutil.copytree(ref_a, out)
    before = _files(out)
    args = ("--overwrite",)
    p = _mlplab(
        {**env, "MLPLAB_KILL_AT": "update:5"},
        "train",
        "--recipe",
        str(d / "b.toml"),
        "--data",
        str(data),
        "--out",
        str(out),
        *args,
    )
    assert p.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()  # set aside with the rest of A
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 2 and "already finished" in p.stderr
    assert _files(out) == before


@pytest.mark.slow
def test_an_older_mlplabs_previous_without_journal_is_put_back(runs, ref_a, a_killed, tmp_path):  # noqa: F811
    _d, _data, env, _ref_b = runs
    out = _copy(a_killed, tmp_path)
    kept = out / ".previous"
    kept.mkdir()
    for name in ("run.json", "checkpoints"):
        os.replace(out / name, kept / name)
    (out / "checkpoints").mkdir()
    (out / "run.json").write_text(json.dumps({"config": {"n_s": 3}}))  # another run's
    p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 0, p.stderr
    _assert_identical(out, ref_a)


def _planted(out: Path, kind: str) -> Path:
    """Plant something hostile in ``out``; return a file that must stay untouched."""
    victim = out.parent / "victim.txt"
    victim.write_text("precious\n")
    prev = out / ".previous"
    if kind == "previous-file":
        prev.write_text("mine\n")
        return prev
    if kind == "previous-link":
        other = out.parent / "elsewhere"
        other.mkdir()
        shutil.copy(victim, other / "run.json")
        prev.symlink_to(other)
        return other / "run.json"
    if kind == "previous-strangers":
        prev.mkdir()
        (prev / "thesis.tex").write_text("precious\n")
        return prev / "thesis.tex"
    if kind == "previous-bad-journal":
        prev.mkdir()
        (prev / "start.json").write_text(
            json.dumps({"format": "mlplab-start", "set_aside": ["../x"]})
        )
        return prev / "start.json"
    (out / ".owner").unlink(missing_ok=True)  # (left by the killed run)
    if kind == "owner-link":
        (out / ".owner").symlink_to(victim)
        return victim
    if kind == "owner-fifo":
        os.mkfifo(out / ".owner")
        return victim
    if kind == "owner-dir":
        (out / ".owner").mkdir()
        return victim
    if kind == "lock-link":
        (out / ".lock").unlink()
        (out / ".lock").symlink_to(victim)
        return victim
    raise AssertionError(kind)


PLANTED = {
    "previous-file": "is in the way",
    "previous-link": "is in the way",
    "previous-strangers": "holds files mlplab did not put there (thesis.tex)",
    "previous-bad-journal": "is damaged",
    "owner-link": "not the regular file where mlplab writes its process id",
    "owner-fifo": "not the regular file where mlplab writes its process id",
    "owner-dir": "not the regular file where mlplab writes its process id",
    "lock-link": "cannot lock run directory",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(PLANTED))
@pytest.mark.parametrize("command", ["train", "resume"])
def test_planted_files_are_one_error_and_untouched(runs, a_killed, tmp_path, kind, command):  # noqa: F811
    d, data, env, _ref_b = runs
    out = _copy(a_killed, tmp_path)
    keep = _planted(out, kind)
    text = keep.read_bytes()
    if command == "train":
        p = _train(env, d / "b.toml", data, out, MLPLAB_KILL_AT="update:9")
    else:
        p = _mlplab(env, "train", "--resume", str(out))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and PLANTED[kind] in lines[0]
    assert keep.read_bytes() == text
    assert [c.name for c in (out / "checkpoints").glob("*.json")] == ["ckpt-000000028.json"]


def test_a_finished_run_put_back_is_not_replaced_without_overwrite(runs, ref_a, tmp_path):  # noqa: F811
    """The finished run comes back before the next start decides: without --overwrite the
    next start is refused, and nothing of the finished run is lost."""
    d, data, env, _ref_b = runs
    out = tmp_path / "out"
    shutil.copytree(ref_a, out)
    before = _files(out)
    args = ["train", "--recipe", str(d / "b.toml"), "--data", str(data), "--out", str(out)]
    p = _mlplab({**env, "MLPLAB_KILL_AT": "update:5"}, *args, "--overwrite")
    assert p.returncode == -signal.SIGKILL
    p = _mlplab(env, *args)
    assert p.returncode == 2 and "holds a finished run again" in p.stderr, p.stderr
    assert _files(out) == before
    p = _mlplab(env, *args)
    assert p.returncode == 2 and "already holds a finished run" in p.stderr
