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
    monkeypatch.setattr(bench_epoch, "bandwidth", lambda: 1e10)  # not 256 MiB of triads here
    out = tmp_path / "bench.json"
    cases = "3072-50-10,3072-1024-512-10,wide adam,bonus/best"
    argv = ["bench_epoch.py", "--repeats", "1", "--pause", "0", "--cases", cases]
    monkeypatch.setattr(sys, "argv", [*argv, "--threads", "1", "--json", str(out)])
    bench_epoch.main()
    printed = capsys.readouterr().out
    assert "GEMM s" in printed and "update s" in printed and "host:" in printed
    assert "/bound" in printed
    rows = {r["case"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == cases.split(",")
    for r in rows.values():
        assert r["mlplab_s"] > 0 and r["torch_s"] > 0 and r["gemm_s"] > 0 and r["update_s"] > 0
        assert r["bound_s"] > r["gemm_s"] and r["threads"] == 1
    assert rows["wide adam"]["vs_sgd"] is not None and rows["3072-50-10"]["vs_sgd"] is None


def test_scaling_line_and_amdahl_projection(bench_epoch, capsys):
    import bench_bounds

    one = {"mlplab_s": 3.0, "gemm_s": 2.0, "torch_s": 4.0}
    two = {"mlplab_s": 1.6, "gemm_s": 1.0, "torch_s": 2.5}
    out = bench_bounds.project("x", one, two)
    assert out["non_gemm_speedup"] == pytest.approx(1.0 / 0.6)
    assert out["torch_speedup"] == pytest.approx(1.6)
    # GEMMs perfectly parallel (1 s -> 0.25 s on 4), the rest 20 % serial
    assert out["projected"][4]["mlplab_s"] == pytest.approx(0.5 + 1.0 * (0.2 + 0.8 / 4))
    assert bench_bounds.amdahl(1.0, 1.0, 16) == 1.0  # no gain from 2 threads: none projected
    assert "non-GEMM part 1.67x" in capsys.readouterr().out


def test_openblas_overrides_are_unset_together_by_a_restart(bench_epoch, monkeypatch):
    calls = []
    monkeypatch.setattr(bench_epoch.os, "execve", lambda *a: calls.append(a))
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    bench_epoch.without_openblas_overrides()
    assert not calls  # nothing to unset: no restart
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    bench_epoch.without_openblas_overrides()
    ((_, _, env),) = calls
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env
    assert env["MLPLAB_BENCH_UNSET"] == "OPENBLAS_CORETYPE=Haswell,OPENBLAS_L2_SIZE=1048576"


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
