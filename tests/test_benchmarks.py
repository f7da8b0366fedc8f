"""The benchmark scripts run, on a few batches, and print what the README quotes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_epoch(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_epoch

    monkeypatch.setattr(bench_epoch, "N", 300)  # three updates of batch 100
    return bench_epoch


@pytest.mark.slow
def test_bench_epoch_prints_its_columns_and_writes_json(bench_epoch, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    cases = "3072-50-10,3072-1024-512-10,wide adam,bonus/best"
    argv = ["bench_epoch.py", "--repeats", "1", "--pause", "0", "--cases", cases]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", str(out)])
    bench_epoch.main()
    printed = capsys.readouterr().out
    assert "GEMM s" in printed and "update s" in printed and "host:" in printed
    rows = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == cases.split(",")
    for r in rows.values():
        assert r["mlplab_s"] > 0 and r["torch_s"] > 0 and r["gemm_s"] > 0 and r["update_s"] > 0
    assert rows["wide adam"]["vs_sgd"] is not None and rows["3072-50-10"]["vs_sgd"] is None


def test_bonus_best_case_follows_the_recipe(bench_epoch):
    from mlplab.config import load_recipe

    cfg, case = load_recipe("bonus/best"), bench_epoch.CASES["bonus/best"]
    assert case.hidden == list(cfg.hidden) and case.optimizer == cfg.optimizer
    assert (case.bn, case.drop, case.flip, case.translate) == (
        cfg.batch_norm,
        cfg.drop_prob,
        cfg.flip,
        cfg.translate,
    )
    assert (case.smoothing, case.lam, case.eta_max) == (cfg.label_smoothing, cfg.lam, cfg.eta_max)
    assert case.momentum == cfg.momentum


def test_unknown_case_is_refused(bench_epoch, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_epoch.py", "--cases", "nope"])
    with pytest.raises(SystemExit):
        bench_epoch.main()
