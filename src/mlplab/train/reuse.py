"""Experiments already done are reused: one cache, keyed by content.

An experiment (a training, a learning-rate range test, a search, a gradient check) runs
into its own directory and leaves there one result file (``results.json``,
``lr_range.json``, ``search.json``, ...). Its *key* is a hash of what decides its numbers:
the kind of experiment, the configuration (without its description), the experiment's own
options and the data's fingerprint. ``DIR/experiment.json`` records the key when the
experiment starts, and again, marked done and with the result file's SHA-256, once that file
is written. The next time:

* done, same key, the same result file: it is read back and nothing runs (*reused*);
* started, same key, not done (it was interrupted): it runs told to continue (a training
  resumes from its checkpoint, a search continues its study);
* anything else (no record, another key, a result file written since by something else, or
  ``force``): it runs afresh.

Studies made of several trainings (the initialisation study, the ablation, the final
model's seeds) cache each training on its own, so a changed study reruns only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplab.config import Config
from mlplab.data import RawDataset, data_fingerprint
from mlplab.errors import MlplabError
from mlplab.fileio import atomic_write_json, parse_json, read_json, read_regular

#: The record of the experiment in a directory: its kind, key, result file and state.
RECORD = "experiment.json"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


#: Fields added after the first release, with their "off" values: left at those they do not
#: enter the hash, so the runs, caches and checkpoints of recipes without them keep their names.
LATER_FIELDS: dict[str, Any] = {
    "zca_eps": 0.0,
    "flip_average": False,
    "record_train_samples": 0,
    "size": [],
    "activation": "relu",
    "layers": [],
    "options": {},
}


def config_hash(cfg: Config) -> str:
    """Content hash of a configuration: everything that decides a run's numbers (all fields
    but the description; :data:`LATER_FIELDS` only when set). It also names a run in its
    checkpoints."""
    d = cfg.to_dict()
    d.pop("description", None)
    for key, off in LATER_FIELDS.items():
        if d[key] == off:
            del d[key]
    return _hash(d)


def content_key(kind: str, cfg: Config | None, data: str, **options: Any) -> str:
    """The key of an experiment: its ``kind``, configuration, ``data`` fingerprint and
    ``options`` (JSON values: ``2`` and ``2.0`` differ, so pass each option in one type)."""
    config = None if cfg is None else config_hash(cfg)
    return _hash({"kind": kind, "config": config, "data": data, "options": options})


@dataclass
class Cache:
    """The experiments of one command: where each was found or run.

    ``force`` runs every experiment afresh. ``reused`` and ``ran`` list the directories of
    the experiments read back and of those that ran, in order.
    """

    force: bool = False
    reused: list[Path] = field(default_factory=list)
    ran: list[Path] = field(default_factory=list)
    _fingerprints: list[tuple[RawDataset, str]] = field(default_factory=list, repr=False)

    def key(self, kind: str, cfg: Config | None, raw: RawDataset, **options: Any) -> str:
        """:func:`content_key` with the fingerprint of ``raw`` (computed once per data set)."""
        found = next((fp for r, fp in self._fingerprints if r is raw), None)
        if found is None:
            found = data_fingerprint(raw)
            self._fingerprints.append((raw, found))
        return content_key(kind, cfg, found, **options)

    def get(
        self,
        directory: str | os.PathLike,
        kind: str,
        key: str,
        result: str,
        run: Callable[[bool], Any],
    ) -> Any:
        """The result of the ``kind`` experiment with ``key`` in ``directory``: the JSON of its
        ``result`` file if it is done, else what ``run(resume)`` returns once it has written
        that file (``resume``: an interrupted run of the same key is there to continue)."""
        d = Path(directory)
        record = None if self.force else _record(d, key)
        if record is not None and record.get("done") is True:
            found = _read(d / result, record.get("sha256"))
            if found is not None:
                self.reused.append(d)
                return found
            record = None  # its result file is gone or was written by something else
        entry = {"kind": kind, "key": key, "result": result}
        _write_record(d, {**entry, "done": False})
        value = run(record is not None)
        digest = hashlib.sha256((d / result).read_bytes()).hexdigest()
        _write_record(d, {**entry, "done": True, "sha256": digest})
        self.ran.append(d)
        return value


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(directory / RECORD, record)
    except OSError as e:
        raise MlplabError(f"cannot write {directory / RECORD}: {e.strerror or e}") from None


def _record(directory: Path, key: str) -> dict[str, Any] | None:
    """The record in ``directory`` if it is of the experiment with ``key``."""
    try:
        record = read_json(directory / RECORD, what="experiment record", max_bytes=1 << 20)
    except MlplabError:  # missing, hostile or not JSON: the experiment runs again
        return None
    return record if isinstance(record, dict) and record.get("key") == key else None


def _read(path: Path, sha256: Any) -> Any:
    """The JSON in ``path`` if its bytes have the SHA-256 ``sha256``, else None."""
    try:
        data = read_regular(path, what="result")
        if hashlib.sha256(data).hexdigest() != sha256:
            return None
        return parse_json(data, source=path, what="result", allow_nan=True)  # ours: digest
    except MlplabError:  # missing, a FIFO, too large, too deep, not JSON: run it again
        return None
