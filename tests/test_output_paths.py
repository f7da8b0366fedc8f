"""Output paths of the model tools are checked before any work: nothing the command reads
(the model, the run's files) or writes twice is replaced, special files are never replaced,
and a missing directory or a failed write is one error line."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from click.testing import CliRunner

from mlplab.cli import cli
from mlplab.nn.network import Network
from mlplab.nn.serialize import save_network


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    net = Network.build(12, [4], 3, rng=np.random.default_rng(0))
    save_network(d / "model", net, np.zeros(12), np.ones(12), ("a", "b", "c"), image_shape=None)
    (d / "results.json").write_text('{"name": "r", "history": []}')
    return d


def _err(args):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


@pytest.mark.parametrize("target", ["model.npz", "model.json", "results.json"])
def test_no_output_replaces_a_file_of_the_input(run_dir, target):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    out = str(run_dir / target)
    for args in (
        ["export", str(run_dir), "--format", "onnx", "--out", out],
        ["export", str(run_dir / "model.npz"), "--format", "safetensors", "--out", out],
        ["weights", str(run_dir), "--out", out],
        ["compare", str(run_dir), "--out", out],
        ["evaluate", str(run_dir), "--confusion", out],
    ):
        assert "is a file of the input" in _err(args), args
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_special_files_missing_directories_and_twice_named_outputs(run_dir, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    export = ["export", str(run_dir), "--format", "onnx", "--out"]
    assert "is not a regular file" in _err([*export, str(fifo)])
    assert fifo.exists() and not fifo.is_file()  # still the FIFO
    assert "is a directory" in _err([*export, str(tmp_path)])
    assert "does not exist" in _err([*export, str(tmp_path / "nowhere" / "m.onnx")])
    same = str(tmp_path / "c.png")
    msg = _err(["evaluate", str(run_dir), "--confusion", same, "--misclassified", same])
    assert "name the same file" in msg


def test_a_failed_write_is_one_error_line(run_dir, tmp_path, monkeypatch):
    import mlplab.report.plots as plots

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "c.png"))

    monkeypatch.setattr(plots, "plot_runs", full)
    msg = _err(["compare", str(run_dir), "--out", str(tmp_path / "c.png")])
    assert "cannot write" in msg and "No space left" in msg


def test_no_output_is_written_into_the_data(run_dir, tmp_path):
    data = tmp_path / "data"
    (data / "train" / "a").mkdir(parents=True)
    target = data / "train" / "a" / "1.png"
    target.write_bytes(b"an image")
    msg = _err(["evaluate", str(run_dir), "--data", str(data), "--confusion", str(target)])
    assert "lies in the data" in msg and target.read_bytes() == b"an image"
