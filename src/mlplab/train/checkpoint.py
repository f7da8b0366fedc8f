"""Checkpoints of a training run: atomic, self-validating, newest wins.

A checkpoint of update ``t`` is the pair ``ckpt-<t>.npz`` (network, optimiser
state, current permutation) and ``ckpt-<t>.json`` (step, generator state,
history, the run's identity, the SHA-256 of the ``.npz``, and a SHA-256 of the JSON
itself). Each file is written atomically (temporary file + rename); the ``.json`` is
written last and is the commit mark: a pair whose ``.json`` is missing, unreadable,
edited, or names another ``.npz`` digest is ignored. Older checkpoints are deleted only
after a newer one is complete, so a process killed at any moment leaves at least one good
checkpoint (once the first has been written).

Reading trusts nothing: the ``.json`` goes through :func:`mlplab.fileio.read_json` (a FIFO,
a device, a link out of the directory, a file too large or too deep, ``NaN``: an error naming
it), the ``.npz`` must be a regular file whose members do not inflate, and
:func:`check_meta` checks the values a trainer's state needs, even when the digests match
(they can be recomputed by whoever edits the files).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mlplab import faults
from mlplab.errors import MlplabError, ModelFileError
from mlplab.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    check_npz_members,
    read_json,
    read_regular,
)

FORMAT = "mlplab-checkpoint"
VERSION = 2
#: What to do about a checkpoint that cannot be used.
AWAY = "move it away to resume from an older checkpoint, or start afresh with --overwrite"
#: The most updates a checkpoint may claim (a run's length is checked against it on resume).
MAX_STEP = 2**53


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
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # (numpy's stub: named arrays)
    data = buf.getvalue()
    faults.maybe_die("checkpoint-start", step)
    atomic_write_bytes(d / f"{_name(step)}.npz", data)
    faults.maybe_die("checkpoint-between", step)
    full = {"format": FORMAT, "format_version": VERSION, "npz_sha256": _sha(data), **meta}
    atomic_write_json(d / f"{_name(step)}.json", {**full, "sha256": _meta_digest(full)})
    faults.maybe_die("checkpoint-end", step)
    good = sorted(_complete(d), key=lambda x: x[0])
    for old_step, _, _ in good[:-keep]:
        for suffix in (".json", ".npz"):
            (d / f"{_name(old_step)}{suffix}").unlink(missing_ok=True)
    return d / f"{_name(step)}.json"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the JSON part (which holds the arrays' digest): covers both."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return _sha(json.dumps(body, sort_keys=True, allow_nan=True).encode())


def _complete(d: Path, strict: bool = False) -> list[tuple[int, Path, dict[str, Any]]]:
    """``(step, json path, json)`` of the checkpoints whose ``.json`` parses and whose
    ``.npz`` is there (digests checked on load), newest first. A ``.json`` that is not JSON
    (torn, truncated) is passed over; with ``strict``, one that is hostile (a FIFO or a
    device, a link out of ``d``, too large, too deep, ``NaN``) is an error naming it."""
    out = []
    for p in d.glob("ckpt-*.json"):
        try:
            meta = read_json(p, what="checkpoint", base=d, error=ModelFileError)
        except ModelFileError as e:
            if strict and getattr(e, "reason", "") not in ("syntax", "missing"):
                raise ModelFileError(f"{e}; {AWAY}") from None
            continue
        if isinstance(meta, dict) and meta.get("format") == FORMAT:
            if os.path.lexists(p.with_suffix(".npz")):  # (read, and checked, on load)
                step = meta.get("step")
                ok = isinstance(step, int) and not isinstance(step, bool)
                out.append((step if isinstance(step, int) and ok else -1, p, meta))
    return sorted(out, key=lambda x: (x[0], x[1].name), reverse=True)


def _is_int(v: Any, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_number(v: Any, low: float = -math.inf) -> bool:
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    return ok and math.isfinite(v) and v >= low


def check_meta(meta: Any, arrays: dict[str, Any] | None = None) -> str | None:
    """What is wrong with a checkpoint's JSON (and, given, its arrays' names), or ``None``:
    the types and ranges :meth:`Trainer.load_state` relies on, checked before it runs (an
    ``n_snapshots`` of 1e9 would loop for hours, an infinite ``step`` overflow)."""
    if not isinstance(meta, dict):
        return "its JSON is not an object"
    step = meta.get("step")
    if not (isinstance(step, int) and _is_int(step, 0, MAX_STEP)):
        return f"'step' must be a whole number of updates, not {step!r}"
    for key in ("seconds", "record_seconds"):
        if (key in meta or key == "seconds") and not _is_number(meta.get(key), 0):
            return f"{key!r} must be a non-negative number, not {meta.get(key)!r}"
    for key, low, high in (("best_step", -1, step), ("stale", 0, MAX_STEP)):
        if not _is_int(meta.get(key, low), low, high):
            return f"{key!r} must be a whole number from {low} to {high}, not {meta[key]!r}"
    n = meta.get("n_snapshots", 0)
    if not _is_int(n, 0, MAX_STEP):
        return f"'n_snapshots' must be a whole number, not {n!r}"
    if meta.get("best_score") is not None and not _is_number(meta["best_score"]):
        return f"'best_score' must be a number or null, not {meta['best_score']!r}"
    if not isinstance(meta.get("run", {}), dict):
        return "'run' must be an object"
    history = meta.get("history")
    if not isinstance(history, list) or len(history) > 2 * step + 2:
        return "'history' must be a list of at most one point per update"
    for point in history:
        if not isinstance(point, dict) or not all(_is_number(v) for v in point.values()):
            return "every 'history' point must map names to numbers"
        if not all(k in point for k in ("step", "lr", "train_cost", "train_accuracy")):
            return "a 'history' point lacks its step, learning rate, cost or accuracy"
    state: Any = meta.get("rng_state")
    try:
        np.random.PCG64().state = state  # the generator's own checks, on a scratch one
    except (TypeError, ValueError, KeyError, OverflowError):
        return f"'rng_state' is not the state of a NumPy generator: {str(state)[:80]}"
    if arrays is not None:
        held = {int(m[1]) for k in arrays if (m := re.match(r"snap(\d+)/", k))}
        if any(i not in held for i in range(min(n, len(held) + 1))):
            return f"'n_snapshots' is {n}, but the arrays hold {len(held)} snapshot(s)"
    return None


def latest_checkpoint(
    directory: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The newest complete, uncorrupted checkpoint in ``directory``, or ``None``.

    Torn, edited or truncated pairs (a digest that does not match) are passed over for an
    older one; a file that is hostile (see :func:`_complete`) is a :class:`ModelFileError`
    naming it. The values of the one returned are checked by the caller (a trainer's state:
    :func:`check_meta`) before use.
    """
    d = Path(directory)
    if not d.is_dir():
        return None
    for _, jpath, meta in _complete(d, strict=True):
        if meta.get("sha256") != _meta_digest(meta):
            continue  # torn, corrupted or edited: fall back to an older one
        npz = jpath.with_suffix(".npz")
        try:
            data = read_regular(npz, what="checkpoint", max_bytes=None, base=d)
        except MlplabError as e:
            if getattr(e, "reason", "") == "missing":
                continue
            raise ModelFileError(f"{e}; {AWAY}") from None
        if _sha(data) != meta.get("npz_sha256"):
            continue
        version = meta.get("format_version")
        if isinstance(version, int) and version > VERSION:
            raise ModelFileError(f"{jpath} was written by a newer mlplab")
        try:
            check_npz_members(io.BytesIO(data), ModelFileError, npz)
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError):  # e.g. an object array: refused without unpickling
            continue
        return meta, arrays
    return None
