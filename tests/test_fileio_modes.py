"""Files mlplab writes get ``0o666 & ~umask``, like any ``open()``; writes stay atomic.

``tempfile.mkstemp`` makes its files 0600, which would keep a run directory or data
cache shared with a group from being read by it.  The umask is process-wide,
so every test restores it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mlplab.nn.serialize as model_format
from mlplab import fileio
from mlplab.data import cache as cache_mod

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def umask() -> Iterator[object]:
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


WRITERS = {
    "bytes": lambda p: fileio.atomic_write_bytes(p, b"x"),
    "json": lambda p: fileio.atomic_write_json(p, {"a": 1}),
    "npz": lambda p: fileio.atomic_save_npz(p, {"w": np.zeros(3)}),
    "callback": lambda p: fileio.atomic_write(p, lambda f: f.write(b"abc")),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_umask(tmp_path, umask, writer, mask, mode):
    umask(mask)
    path = tmp_path / "out.bin"
    WRITERS[writer](path)
    assert _mode(path) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp file left


def test_replacing_a_file_applies_the_umask_again(tmp_path, umask):
    path = tmp_path / "results.json"
    path.write_text("old")
    path.chmod(0o600)
    umask(0o022)
    fileio.atomic_write_json(path, {"new": True})
    assert _mode(path) == 0o644 and "new" in path.read_text()


def test_save_model_files_follow_umask(tmp_path, umask):
    umask(0o027)
    model_format.save_model(tmp_path / "model", {"arch": "x"}, {"W": np.ones((2, 2))})
    assert _mode(tmp_path / "model.json") == 0o640
    assert _mode(tmp_path / "model.npz") == 0o640


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_cache_files_follow_umask(tmp_path, umask, mask, mode):
    umask(mask)
    arrays = {"x": np.arange(12, dtype=np.uint8).reshape(3, 4)}
    assert cache_mod.save_entry(tmp_path, "k", arrays, {"m": 1})
    files = sorted((tmp_path / "k").iterdir())
    assert [f.name for f in files] == ["manifest.json", "x.npy"]
    assert {f.name: _mode(f) for f in files} == {f.name: mode for f in files}


def test_atomic_write_returns_size(tmp_path):
    assert fileio.atomic_write(tmp_path / "f", lambda f: f.write(b"12345")) == 5


@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt])
def test_failed_write_leaves_old_file_and_no_temp(tmp_path, exc):
    path = tmp_path / "results.json"
    path.write_text("old")

    def write(f):
        f.write(b"half of the new")
        raise exc("stop")

    with pytest.raises(exc):
        fileio.atomic_write(path, write)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_temp_file_is_in_the_destination_directory(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst)))
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", spy)
    fileio.atomic_write_bytes(tmp_path / "a.txt", b"a")
    ((src, dst),) = seen
    assert src.parent == dst.parent == tmp_path and src.name.startswith(".a.txt.")


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_atomic_directory_follows_umask_and_replaces(tmp_path, umask, mask, mode):
    final = tmp_path / "split"
    final.mkdir()
    (final / "old.npy").write_bytes(b"old")
    umask(mask)
    with fileio.atomic_directory(final) as d:
        assert d.parent == tmp_path and d.name.startswith(".split.")
        assert not (d / "old.npy").exists()
        fileio.atomic_write_bytes(d / "new.npy", b"new")
        assert (final / "old.npy").exists()  # the old directory stays until the block ends
    assert _mode(final) == mode
    assert [p.name for p in final.iterdir()] == ["new.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["split"]  # no temporary directory left


@pytest.mark.parametrize("exc", [ValueError, KeyboardInterrupt])
def test_failed_atomic_directory_leaves_old_one_and_no_temp(tmp_path, exc):
    final = tmp_path / "split"
    final.mkdir()
    (final / "old.npy").write_bytes(b"old")
    with pytest.raises(exc), fileio.atomic_directory(final) as d:
        (d / "half.npy").write_bytes(b"half")
        raise exc("stop")
    assert [p.name for p in final.iterdir()] == ["old.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["split"]
