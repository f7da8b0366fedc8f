"""Property-based fuzzing: random bytes and mutations of valid files either load or raise the
documented error (ModelFileError / DataError), never anything else."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_loaders import write_bin

from mlplab.data.cifar10 import read_binary_batches
from mlplab.errors import DataError, ModelFileError
from mlplab.nn.network import Network
from mlplab.nn.serialize import load_network, save_network

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _valid_model(d: Path) -> Path:
    net = Network.build(3072, [3], 10, rng=np.random.default_rng(0), batch_norm=True)
    save_network(d / "m", net, np.zeros(3072), np.ones(3072), tuple("abcdefghij"))
    return d / "m"


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, val in edits:
        if buf:
            buf[pos % len(buf)] = val
    if cut is not None and buf:
        buf = buf[: cut % len(buf)]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), max_size=8)
CUT = st.none() | st.integers(0, 10**7)


def _load_model_or_documented_error(path: Path) -> None:
    try:
        m = load_network(path)
    except ModelFileError:
        return
    assert m.network.d_in == 3072  # it loaded: it must be a usable model


@FUZZ
@given(edits=EDITS, cut=CUT, which=st.sampled_from(["npz", "json"]))
def test_model_loader_on_mutated_files(tmp_path_factory, edits, cut, which):
    d = tmp_path_factory.mktemp("m")
    base = _valid_model(d)
    f = base.with_suffix(f".{which}")
    f.write_bytes(_mutate(f.read_bytes(), edits, cut))
    _load_model_or_documented_error(base)


@FUZZ
@given(blob=st.binary(max_size=4096), which=st.sampled_from(["npz", "json"]))
def test_model_loader_on_random_bytes(tmp_path_factory, blob, which):
    d = tmp_path_factory.mktemp("r")
    base = _valid_model(d)
    base.with_suffix(f".{which}").write_bytes(blob)
    _load_model_or_documented_error(base)


@FUZZ
@given(edits=EDITS, cut=CUT, member=st.integers(0, 100))
def test_model_loader_on_mutated_npz_members(tmp_path_factory, edits, cut, member):
    """Mutate one array inside a well-formed zip (headers, dtypes, shapes of .npy members)."""
    d = tmp_path_factory.mktemp("z")
    base = _valid_model(d)
    npz = base.with_suffix(".npz")
    with zipfile.ZipFile(npz) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = sorted(members)[member % len(members)]
    members[name] = _mutate(members[name], edits, cut)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    npz.write_bytes(out.getvalue())
    _load_model_or_documented_error(base)


@FUZZ
@given(
    edits=EDITS,
    cut=CUT,
    which=st.sampled_from(["data_batch_1.bin", "test_batch.bin", "batches.meta.txt"]),
)
def test_binary_reader_on_mutated_files(tmp_path_factory, edits, cut, which):
    d = tmp_path_factory.mktemp("b") / "cifar-10-batches-bin"
    write_bin(d)
    f = d / which
    f.write_bytes(_mutate(f.read_bytes(), edits, cut))
    try:
        raw = read_binary_batches(d)
    except DataError:
        return
    assert raw.x_train.shape[1] == 3072 and raw.x_train.dtype == np.uint8
    assert raw.y_train.max() < len(raw.classes)


@FUZZ
@given(blob=st.binary(max_size=3 * 3073))
def test_binary_reader_on_random_bytes(tmp_path_factory, blob):
    d = tmp_path_factory.mktemp("rb") / "cifar-10-batches-bin"
    write_bin(d)
    (d / "data_batch_5.bin").write_bytes(blob)
    try:
        read_binary_batches(d)
    except DataError:
        return
