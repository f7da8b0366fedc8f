"""Crafted pickles in a cifar-10-batches-py folder: refused with one error, never a crash,
never an allocation the file does not hold the bytes for."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data_loaders import write_py

import mlplab.data.pickles as pk
from mlplab.errors import DataError

try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray, numeric  # type: ignore[no-redef]


def _dict_with(value: bytes) -> bytes:
    """Protocol-2 pickle of {b"data": <value opcodes>, b"labels": []}."""
    return b"\x80\x02}" + b"C\x04data" + value + b"s" + b"C\x06labels]s."


def _nested_tuples(n: int) -> bytes:
    return _dict_with(b"K\x00" + b"\x85" * n)  # BININT1 0, then TUPLE1 n times


def _nested_lists(n: int) -> bytes:
    return _dict_with(b"]" * n + b"a" * (n - 1))  # EMPTY_LIST n times, APPEND n-1 times


class _Huge:
    def __reduce__(self):  # what numpy writes, but a declared shape of 28.6 GiB
        return (multiarray._reconstruct, (np.ndarray, (30_700_000_000,), b"b"))


class _HugeFrom:
    def __reduce__(self):  # protocol 5's path: 10 bytes said to be 28.6 GiB
        return (numeric._frombuffer, (b"\0" * 10, np.dtype("u1"), (30_700_000_000,), "C"))


def _load_in_child(path: Path) -> subprocess.CompletedProcess:
    """Load in a child limited to 2 GiB of address space: a crash or an allocation shows."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from pathlib import Path\nfrom mlplab.errors import DataError\n"
        "from mlplab.data.pickles import unpickle\n"
        "try:\n    unpickle(Path(sys.argv[1]))\nexcept DataError as e:\n    print(e); sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (_nested_tuples(200_000), "nests more than 16 levels deep"),
        (_nested_lists(100_000), "nests more than 16 levels deep"),
        (pickle.dumps({b"data": _Huge(), b"labels": [0]}, protocol=2), "shape (30700000000,)"),
        (pickle.dumps({b"data": _HugeFrom(), b"labels": [0]}, protocol=2), "does not match"),
    ],
    ids=["200k-nested-tuples", "100k-nested-lists", "declares-28.6GiB", "frombuffer-28.6GiB"],
)
def test_crafted_pickle_is_refused_in_a_small_process(tmp_path, blob, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob)
    assert len(blob) < 300_000
    p = _load_in_child(path)
    assert p.returncode == 2, (p.returncode, p.stderr[-500:])  # not -11 (SIGSEGV), not 1
    assert message in p.stdout and str(path) in p.stdout


def test_protocol_5_arrays_load(tmp_path):
    arr = np.arange(4 * 3072).astype(np.uint8).reshape(4, 3072)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": arr, b"labels": [0] * 4}, protocol=5))
    np.testing.assert_array_equal(pk.unpickle(path)[b"data"], arr)  # through _frombuffer


def test_oversized_file_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        f.truncate(pk.MAX_BYTES + 1)  # sparse
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read"))
    with pytest.raises(DataError, match="larger than a CIFAR-10 batch can be"):
        pk.unpickle(path)


def test_official_digest_skips_the_scan_and_others_are_scanned(tmp_path, monkeypatch):
    d = tmp_path / "cifar-10-batches-py"
    write_py(d)
    calls = []
    real = pk.nesting_depth
    monkeypatch.setattr(pk, "nesting_depth", lambda data, *a: calls.append(1) or real(data, *a))
    pk.unpickle(d / "data_batch_1")
    # a dict of lists, bytes and an array (whose reduce/build steps nest a few levels)
    assert calls == [1] and real((d / "data_batch_1").read_bytes()) <= 8
    digest = hashlib.md5((d / "data_batch_1").read_bytes()).hexdigest()
    monkeypatch.setitem(pk.OFFICIAL_MD5, "data_batch_1", digest)  # as if it were the official
    out = pk.unpickle(d / "data_batch_1")
    assert calls == [1] and type(out[b"data"]) is np.ndarray
