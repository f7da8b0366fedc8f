"""``mlplab compare`` reads results.json files as untrusted: each hostile file is
one ``error:`` line with exit status 2, at once; a FIFO does not block and a link to
``/dev/zero`` is not read. Before, these were tracebacks (a list, no ``step``, a history that
is not a list, 200,000 levels of nesting) or hangs (a FIFO, ``/dev/zero``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplab.cli import cli
from mlplab.errors import MlplabError
from mlplab.train.inspect import MAX_NAME, run_histories

POINT = {"step": 10, "train_loss": 1.5, "val_accuracy": 0.4}

#: name -> (results.json text, words of the one error line)
HOSTILE = {
    "a list": ("[1, 2]", "a JSON list, not an object"),
    "null": ("null", "a JSON null, not an object"),
    "no history": ('{"name": "x"}', "no 'history'"),
    "history an object": ('{"history": {"a": 1}}', "'history' is not a list"),
    "history a string": ('{"history": "abc"}', "'history' is not a list"),
    "a point that is a string": ('{"history": ["a"]}', "history point 0 is not an object"),
    "no step": ('{"history": [{"val_accuracy": 0.5}]}', "history point 0 has no number 'step'"),
    "step a bool": ('{"history": [{"step": true}]}', "history point 0 has no number 'step'"),
    "step a string": ('{"history": [{"step": "1"}]}', "history point 0 has no number 'step'"),
    "a value a string": (
        json.dumps({"history": [POINT, {**POINT, "val_accuracy": "high"}]}),
        "history point 1: 'val_accuracy' is not a number",
    ),
    "a value a list": (
        json.dumps({"history": [{**POINT, "lr": [1]}]}),
        "history point 0: 'lr' is not a number",
    ),
    "name an object": (json.dumps({"name": {}, "history": [POINT]}), "'name' is not a string"),
    "config a list": (json.dumps({"config": [1], "history": [POINT]}), "'config' is not an"),
    "subset a string": (
        json.dumps({"config": {"record_train_samples": "lots"}, "history": [POINT]}),
        "'config.record_train_samples' is not a whole number",
    ),
    "subset a float": (
        json.dumps({"config": {"record_train_samples": 1e308}, "history": [POINT]}),
        "'config.record_train_samples' is not a whole number",
    ),
    "nested 200,000 deep": ("[" * 200_000 + "]" * 200_000, "nests deeper than 64 levels"),
    "not JSON": ("{", "is not valid JSON"),
    "not UTF-8": (b"\xff\xfe{}", "is not UTF-8 text"),
}


def _compare(*args: str):
    return CliRunner().invoke(cli, ["compare", *args])


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_results_are_one_error_line(tmp_path, case):
    text, words = HOSTILE[case]
    path = tmp_path / "results.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    r = _compare(str(path), "--out", str(tmp_path / "c.png"))
    assert r.exit_code == 2, (r.output, r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.output
    assert str(path) in lines[0]
    assert not (tmp_path / "c.png").exists()


def _run_cli(*args: str, timeout: float = 30):
    started = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "mlplab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p, time.perf_counter() - started


@pytest.mark.parametrize(
    ("kind", "words"),
    [("fifo", "is not a regular file (a FIFO)"), ("zero", "(a character device)")],
)
def test_special_files_are_refused_at_once(tmp_path, kind, words):
    """A FIFO blocked ``compare`` forever; a link to /dev/zero read until memory ran out."""
    path = tmp_path / "results.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    p, took = _run_cli("compare", str(path), "--out", str(tmp_path / "c.png"))
    assert p.returncode == 2 and p.stderr.startswith("error: ") and words in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and took < 20


def test_a_run_directory_holding_a_fifo_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "results.json")
    p, _took = _run_cli("compare", str(tmp_path / "run"), "--out", str(tmp_path / "c.png"))
    assert p.returncode == 2 and "(a FIFO)" in p.stderr, p.stderr


def test_good_results_still_compare(tmp_path):
    """What mlplab writes is read back: NaN (an undefined value) and null are gaps in a
    curve; a long name is shortened for the legend; the subset note stays."""
    history = [POINT, {**POINT, "step": 20, "val_accuracy": math.nan, "val_loss": None}]
    res = {"name": "n" * 500, "config": {"record_train_samples": 100}, "history": history}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(res, allow_nan=True))
    (tmp_path / "b.json").write_text(json.dumps({"history": [POINT]}))
    runs = run_histories([tmp_path / "a", tmp_path / "b.json"])
    assert runs[0][0] == "n" * (MAX_NAME - 1) + "… (train curves: first 100 samples)"
    assert runs[1] == (str(tmp_path / "b.json"), [POINT])
    r = _compare(str(tmp_path / "a"), str(tmp_path / "b.json"), "--out", str(tmp_path / "c.png"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c.png").stat().st_size > 1000


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
_results = st.fixed_dictionaries(
    {"history": st.lists(st.dictionaries(st.sampled_from(["step", "lr", "x"]), _json), max_size=3)},
    optional={"name": _json, "config": _json},
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_json | _results)
def test_any_json_is_read_or_refused_with_one_error(tmp_path, doc):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    try:
        ((_name, history),) = run_histories([path])
    except MlplabError:
        return
    for point in history:  # what is handed to the figure: numbers only
        assert isinstance(point["step"], int | float) and not isinstance(point["step"], bool)
        assert all(v is None or type(v) in (int, float) for v in point.values())
