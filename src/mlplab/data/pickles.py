"""Reading CIFAR-10's Python pickles without trusting them.

Unpickling can run code, crash the interpreter (a deeply nested structure) or allocate
whatever a file declares. So:

1. The official files are recognised by their published MD5 digests (the ones torchvision
   checks for each member of the archive); only those are unpickled as they are.
2. Any other pickle must be at most :data:`MAX_BYTES` long, and its opcodes are scanned
   first (``pickletools.genops``, nothing is built): nesting deeper than :data:`MAX_DEPTH`
   is refused.
3. Either way, the unpickler builds only numpy arrays, dtypes and plain containers (any
   other global is refused before it is called), and an array's declared size must match
   the bytes the file holds for it before anything is allocated.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import DataError

#: Published MD5 of each member of cifar-10-python.tar.gz.
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
MAX_BYTES = 200 * 2**20  # an official batch is 31 MB
MAX_DEPTH = 16  # a batch is a dict of arrays, lists and bytes: depth 3
_NO_PUSH = {"PROTO", "FRAME", "READONLY_BUFFER", "STOP"}


def _multiarray() -> tuple[Any, Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    return multiarray, numeric


def _reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's pickles start every array empty (shape ``(0,)``) and fill it by ``BUILD``."""
    if cls is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"refusing to reconstruct an array of shape {shape!r}")
    return _Checked((0,), np.uint8)


class _Checked(np.ndarray):
    """An array whose ``__setstate__`` checks the declared size against the bytes given."""

    def __setstate__(self, state: Any) -> None:
        shape, dtype, raw = state[-4], np.dtype(state[-3]), state[-1]
        n = int(np.prod(np.array(shape, dtype=object), dtype=object)) * dtype.itemsize
        if not isinstance(raw, bytes | bytearray) or n != len(raw):
            raise pickle.UnpicklingError(f"array of shape {shape} does not match its data")
        super().__setstate__(state)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    dt, view = np.dtype(dtype), memoryview(buf)
    if int(np.prod(np.array(shape, dtype=object), dtype=object)) * dt.itemsize != view.nbytes:
        raise pickle.UnpicklingError(f"array of shape {shape} does not match its data")
    _, numeric = _multiarray()
    return numeric._frombuffer(buf, dt, shape, order)


def _latin1_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for bytes: latin-1 only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only to latin-1 encode a str")
    return obj.encode("latin-1")


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray, _ = _multiarray()
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        out[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        out[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{mod}.numeric", "_frombuffer")] = _frombuffer
    return out


class _Restricted(pickle.Unpickler):
    """Builds only numpy arrays (size-checked), dtypes and plain containers."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path, self._ok = path, _allowed()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ok:
            raise DataError(
                f"{self._path}: refusing to unpickle global {module}.{name} (a "
                "CIFAR-10 batch holds only numpy arrays, lists, ints and bytes)"
            )
        return self._ok[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self._path}: refusing to unpickle a persistent id")


def nesting_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """How deeply the pickle ``data`` nests containers, from its opcodes alone (stops past
    ``limit``): a stack machine that tracks each value's depth instead of building it."""
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[Any, int] = {}
    deepest = 0
    for op, arg, _pos in pickletools.genops(data):
        name = op.name
        if name in _NO_PUSH:
            continue
        if name == "MARK":
            marks.append(len(stack))
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name.endswith("PUT"):
            memo[arg] = stack[-1]
        elif name.endswith("GET"):
            stack.append(memo.get(arg, 0))
        elif name == "POP":
            stack.pop()
        elif name == "POP_MARK":
            del stack[marks.pop() :]
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET", "OBJ", "INST"):
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            stack.append(1 + max(items, default=0))
        elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            stack[-1] = max(stack[-1], 1 + max(items, default=0))
        elif name in ("APPEND", "SETITEM"):
            items = [stack.pop() for _ in range(1 if name == "APPEND" else 2)]
            stack[-1] = max(stack[-1], 1 + max(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX"):
            n = {"REDUCE": 2, "BUILD": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}.get(name) or int(name[-1])
            items = [stack.pop() for _ in range(n)]
            stack.append(1 + max(items))
        elif name == "STACK_GLOBAL":
            del stack[-2:]
            stack.append(0)
        else:  # pushes one plain value: a number, a string, bytes, None, an empty container
            stack.append(0)
        if stack and stack[-1] > deepest:
            deepest = stack[-1]
            if deepest > limit:
                break
    return deepest


def unpickle(path: Path) -> dict:
    """Load one CIFAR-10 Python batch (a dict) from ``path`` under the rules above."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DataError(f"{path}: {size} bytes, larger than a CIFAR-10 batch can be")
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    official = OFFICIAL_MD5.get(path.name) == hashlib.md5(data, usedforsecurity=False).hexdigest()
    try:
        if not official and nesting_depth(data) > MAX_DEPTH:
            raise DataError(
                f"{path}: the pickle nests more than {MAX_DEPTH} levels deep (a CIFAR-10 batch "
                "nests a few); refused before unpickling"
            )
        obj = _Restricted(io.BytesIO(data), path).load()
    except DataError:
        raise
    except Exception as exc:  # anything a malformed pickle can raise
        raise DataError(f"{path}: not a valid CIFAR-10 python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {k: np.asarray(v) if isinstance(v, _Checked) else v for k, v in obj.items()}
