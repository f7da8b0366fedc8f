"""Checkpoints of a training run: atomic, self-validating, newest wins.

A checkpoint of update ``t`` is the pair ``ckpt-<t>.npz`` (network, optimiser
state, current permutation) and ``ckpt-<t>.json`` (step, generator state,
history, the run's identity, the SHA-256 of the ``.npz``, and a SHA-256 of the JSON
itself). Each file is written atomically (temporary file + rename); the ``.json`` is
written last and is the commit mark: a pair whose ``.json`` is missing, unreadable,
edited, or names another ``.npz`` digest is ignored. Older checkpoints are deleted only
after a newer one is complete, so a process killed at any moment leaves at least one good
checkpoint (once the first has been written).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import faults
from mlplab.errors import ModelFileError
from mlplab.fileio import atomic_write_bytes, atomic_write_json

FORMAT = "mlplab-checkpoint"
VERSION = 2


def _name(step: int) -> str:
    return f"ckpt-{step:09d}"


def write_checkpoint(
    directory: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray], keep: int = 1
) -> Path:
    """Write the checkpoint of ``meta["step"]`` into ``directory``; keep the ``keep`` newest."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    step = int(meta["step"])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    faults.maybe_die("checkpoint-start", step)
    atomic_write_bytes(d / f"{_name(step)}.npz", data)
    faults.maybe_die("checkpoint-between", step)
    full = {"format": FORMAT, "format_version": VERSION, "npz_sha256": _sha(data), **meta}
    atomic_write_json(d / f"{_name(step)}.json", {**full, "sha256": _meta_digest(full)})
    faults.maybe_die("checkpoint-end", step)
    good = sorted(_complete(d), key=lambda x: x[0])
    for old_step, _ in good[:-keep]:
        for suffix in (".json", ".npz"):
            (d / f"{_name(old_step)}{suffix}").unlink(missing_ok=True)
    return d / f"{_name(step)}.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the JSON part (which holds the arrays' digest): covers both."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return _sha(json.dumps(body, sort_keys=True, allow_nan=True).encode())


def _complete(d: Path) -> list[tuple[int, Path]]:
    """``(step, json path)`` of checkpoints whose ``.json`` parses (digest checked on load)."""
    out = []
    for p in d.glob("ckpt-*.json"):
        try:
            meta = json.loads(p.read_text())
            if not isinstance(meta, dict):
                continue
            if meta.get("format") == FORMAT and (p.with_suffix(".npz")).is_file():
                out.append((int(meta["step"]), p))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def latest_checkpoint(
    directory: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The newest complete, uncorrupted checkpoint in ``directory``, or ``None``."""
    d = Path(directory)
    if not d.is_dir():
        return None
    for _, jpath in sorted(_complete(d), key=lambda x: x[0], reverse=True):
        meta = json.loads(jpath.read_text())
        data = jpath.with_suffix(".npz").read_bytes()
        if meta.get("sha256") != _meta_digest(meta) or _sha(data) != meta.get("npz_sha256"):
            continue  # torn, corrupted or edited: fall back to an older one
        version = meta.get("format_version")
        if isinstance(version, int) and version > VERSION:
            raise ModelFileError(f"{jpath} was written by a newer mlplab")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError):  # e.g. an object array: refused without unpickling
            continue
        return meta, arrays
    return None
