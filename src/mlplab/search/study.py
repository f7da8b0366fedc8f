"""Optuna storage and study handling: connecting, locking, stale trials, the best trial.

Durability and exactly-once rules (see ``docs/search.md``):

* Every trial is a *slot* ``(stage, slot)``; its parameters are a deterministic
  function of the slot (:func:`mlplab.search.space.draw`).  A stage is finished
  when each of its slots ``0..N-1`` has a COMPLETE trial.
* A worker takes a slot only while holding the study lock (:class:`StudyLock`: a
  file lock beside a SQLite database, a PostgreSQL advisory lock, a MySQL named
  lock), and only a slot with no COMPLETE and no RUNNING trial; creating the trial
  happens under the same lock, so no two workers ever run the same slot.
* A RUNNING trial whose process is gone is marked FAIL, and its slot is free again:
  the next worker re-runs it *with the same parameters*.  A trial counts as gone when
  (a) its heartbeat (recorded by the running worker every ``heartbeat`` seconds) is
  older than ``grace`` seconds -- Optuna's :func:`optuna.storages.fail_stale_trials`,
  by the database's clock -- or (b) it was started on *this* host (same hostname,
  boot id and PID namespace) by a process that no longer exists.  Rule (b) lets a
  restarted command re-try a killed local trial at once; trials of live workers, on
  this or other machines, are never failed by it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlplab.errors import MlplabError

#: Study user attribute holding the settings the study was created with.
ATTR_SETTINGS = "mlplab_search"
#: Study user attribute holding the fine-stage parameters once derived.
ATTR_FINE = "mlplab_fine_params"
#: Keys of a trial's user attributes.
STAGE, SLOT = "stage", "slot"


def import_optuna() -> Any:
    """Import optuna (quietly), or raise a clear error if it is not installed."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the environment
        raise MlplabError(
            "mlplab search needs optuna: pip install optuna (and 'psycopg[binary]' for PostgreSQL)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed.*")
    return optuna


def default_study_name(recipe_name: str) -> str:
    """``assignment2/search`` -> ``assignment2-search``."""
    return recipe_name.replace("/", "-").replace("\\", "-")


def default_storage(out: str | os.PathLike) -> str:
    """The SQLite URL of the study file under ``out`` (relative paths stay relative)."""
    return f"sqlite:///{Path(out).as_posix()}/study.db"


def redact(url: str) -> str:
    """``url`` with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "StorageInternalError":  # optuna's wrapper: say what went wrong
        exc = exc.__cause__ or exc.__context__ or exc
    inner = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    return (lines[0] if lines else type(inner).__name__)[:300]


def _dialect(url: str) -> str:
    d = url.split(":", 1)[0].split("+", 1)[0].lower()
    return "postgresql" if d == "postgres" else d


def engine_url(url: str) -> str:
    """``url`` with an installed PostgreSQL driver named explicitly.

    ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1 but psycopg2 to older versions;
    an explicit ``postgresql+DRIVER://`` is left alone.
    """
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    import importlib.util

    rest = url.split("://", 1)[1]
    has = importlib.util.find_spec
    if has("psycopg") is not None and has("sqlalchemy.dialects.postgresql.psycopg") is not None:
        return f"postgresql+psycopg://{rest}"
    if has("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (``None`` for other URLs or in-memory)."""
    if _dialect(url) != "sqlite":
        return None
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return Path(db) if db and db != ":memory:" else None


def open_storage(
    url: str,
    *,
    heartbeat: int | None = None,
    grace: int | None = None,
    must_exist: bool = False,
) -> Any:
    """An Optuna ``RDBStorage`` for ``url``; :class:`MlplabError` if it cannot be reached.

    ``heartbeat``/``grace`` (seconds) enable Optuna's heartbeat of running trials.
    ``must_exist``: a SQLite file must already exist (it is never created then).
    """
    optuna = import_optuna()
    dialect = _dialect(url)
    if dialect not in ("sqlite", "postgresql", "mysql"):
        raise MlplabError(
            f"unsupported search storage {redact(url)}: use sqlite:///FILE, "
            "postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://..."
        )
    engine: dict[str, Any] = {"pool_pre_ping": True}
    path = sqlite_path(url)
    if dialect == "sqlite":
        if path is None:
            raise MlplabError("search storage sqlite:///:memory: cannot be shared; give a file")
        if must_exist and not path.is_file():
            raise MlplabError(f"no search study database {path} (run `mlplab search` first)")
        if not path.parent.is_dir():
            raise MlplabError(f"cannot reach search storage {url}: no directory {path.parent}")
        engine["connect_args"] = {"timeout": 120}
    elif dialect == "postgresql":
        engine["connect_args"] = {"connect_timeout": 15}
    # Optuna creates its tables when it first opens a database, and two processes doing
    # that at once (machines started together on a fresh database) can collide: serialise.
    schema_lock = StudyLock(url, "(schema)", failure="cannot reach search storage")
    try:
        with schema_lock:
            return optuna.storages.RDBStorage(
                engine_url(url),
                engine_kwargs=engine,
                heartbeat_interval=heartbeat,
                grace_period=grace,
            )
    except MlplabError:
        raise
    except ImportError as e:
        raise MlplabError(
            f"cannot reach search storage {redact(url)}: database driver missing ({e}); "
            "for PostgreSQL pip install 'psycopg[binary]' (or psycopg2-binary)"
        ) from None
    except Exception as e:  # sqlalchemy OperationalError, ArgumentError, ...
        raise MlplabError(f"cannot reach search storage {redact(url)}: {_reason(e)}") from None
    finally:
        schema_lock.close()


# --------------------------------------------------------------------------- the lock


class StudyLock:
    """Mutual exclusion of the workers of one study, wherever they run.

    SQLite: ``fcntl.flock`` on ``<db>.lock`` (all workers share the file system);
    PostgreSQL: ``pg_advisory_lock`` on a key derived from the study name; MySQL:
    ``GET_LOCK``.  The database-side locks are released by the server when the
    holder's connection dies, so a killed worker never leaves the lock taken.
    """

    def __init__(self, url: str, study: str, *, failure: str = "cannot lock study on") -> None:
        self.url, self.study, self.failure = url, study, failure
        self.dialect = _dialect(url)
        digest = hashlib.sha256(f"mlplab-search:{study}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine: Any = None
        self._conn: Any = None
        self._fd: int | None = None

    def _connect(self) -> Any:
        if self._engine is None:
            import sqlalchemy

            args = {"connect_timeout": 15} if self.dialect == "postgresql" else {}
            self._engine = sqlalchemy.create_engine(
                engine_url(self.url), poolclass=sqlalchemy.pool.NullPool, connect_args=args
            )
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def acquire(self) -> None:
        try:
            if self.dialect == "sqlite":
                import fcntl

                path = sqlite_path(self.url)
                assert path is not None
                self._fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                return
            had = self._conn is not None
            try:
                self._db_lock()
            except Exception:
                if not had:
                    raise
                self._drop()  # a connection that died since its last use: one more try
                self._db_lock()
        except MlplabError:
            raise
        except ImportError as e:
            raise MlplabError(
                f"{self.failure} {redact(self.url)}: database driver missing ({e}); for "
                "PostgreSQL pip install 'psycopg[binary]' (or psycopg2-binary)"
            ) from None
        except Exception as e:
            self._drop()
            raise MlplabError(f"{self.failure} {redact(self.url)}: {_reason(e)}") from None

    def _db_lock(self) -> None:
        import sqlalchemy

        conn = self._connect()
        if self.dialect == "postgresql":
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        else:
            conn.execute(sqlalchemy.text("SELECT GET_LOCK(:k, -1)"), {"k": f"mlplab-{self.key}"})
        conn.commit()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
            return
        if self._conn is None:
            return
        import sqlalchemy

        try:
            if self.dialect == "postgresql":
                self._conn.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key}
                )
            else:
                self._conn.execute(
                    sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": f"mlplab-{self.key}"}
                )
            self._conn.commit()
        except Exception:
            self._drop()  # a dead connection has released the lock anyway

    def _drop(self) -> None:
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self.release()
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------- owners, liveness


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def host_key() -> str:
    """Identifies this host and PID namespace: hostname, boot id, PID-namespace inode."""
    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = ""
    return f"{socket.gethostname()}|{_read('/proc/sys/kernel/random/boot_id')}|{ns}"


def process_start(pid: int) -> str:
    """Start time of process ``pid`` (clock ticks since boot; '' if unknown)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def owner_attrs() -> dict[str, Any]:
    """Who runs a trial: stored with it so that a dead local owner can be recognised."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "host_key": host_key(),
        "pid": pid,
        "pid_start": process_start(pid),
        "threads": os.environ.get("MLPLAB_SEARCH_THREADS"),  # BLAS threads (None: not limited)
    }


def process_alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` (started at ``start``, as :func:`process_start`) still runs."""
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        state = stat.rsplit(")", 1)[-1].split()[0]
        if state in ("Z", "X"):
            return False
        return not start or process_start(pid) == start
    if Path("/proc/self/stat").exists():
        return False  # /proc works here, so no entry means no process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_trials(study: Any, storage: Any) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker is gone (see module docstring); their numbers."""
    optuna = import_optuna()
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if storage.heartbeat_interval:
        optuna.storages.fail_stale_trials(study)
    me = host_key()
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner") or {}
        if owner.get("host_key") != me or not isinstance(owner.get("pid"), int):
            continue
        if owner["pid"] == os.getpid() or process_alive(owner["pid"], owner.get("pid_start", "")):
            continue
        tid = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(tid, "failed_because", "its worker process is gone")
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    return sorted(t.number for t in failed if t.number in before)


# ------------------------------------------------------------------------ the study


def load_study(name: str, storage: Any, url: str) -> Any:
    """Load study ``name``; :class:`MlplabError` listing the stored studies if absent."""
    optuna = import_optuna()
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        try:
            names = optuna.get_all_study_names(storage)
        except Exception:
            names = []
        have = ", ".join(names) if names else "none"
        raise MlplabError(f"no study {name!r} in {redact(url)} (studies there: {have})") from None


class StudySettingsChanged(MlplabError):
    """The stored study was started with other settings (``diffs`` describes them)."""

    def __init__(self, message: str, diffs: list[str]) -> None:
        super().__init__(message)
        self.diffs = diffs


def delete_study(name: str, storage: Any) -> bool:
    """Delete study ``name`` and all its trials (call under the lock); whether it existed."""
    optuna = import_optuna()
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        return False
    return True


def create_or_check_study(name: str, storage: Any, url: str, settings: dict[str, Any]) -> Any:
    """Create study ``name`` (maximising) or load it and check it has the same ``settings``.

    Call under :class:`StudyLock`.  Trial counts may differ between runs; anything
    else that decides the trials' parameters (recipe, space, fine rule, seed) may not.
    """
    optuna = import_optuna()
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
    except Exception as e:
        raise MlplabError(f"cannot open study {name!r} on {redact(url)}: {_reason(e)}") from None
    stored = study.user_attrs.get(ATTR_SETTINGS)
    if stored is None:
        study.set_user_attr(ATTR_SETTINGS, settings)
        return study
    space = stored.get("space")
    if isinstance(space, dict):  # studies from before repeats existed trained once per trial
        space.setdefault("repeats", 1)
        space.setdefault("fine_repeats", space["repeats"])
    diffs = settings_diff(stored, settings)
    if diffs:
        raise StudySettingsChanged(
            f"study {name!r} in {redact(url)} was started with other settings "
            f"({'; '.join(diffs[:4])}); use the same recipe and options, another --study, "
            "or --restart changed to replace it",
            diffs,
        )
    return study


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human descriptions of the differences that matter (fields new in one side are ignored)."""
    out = []
    for k in sorted(set(old) & set(new)):
        a, b = old[k], new[k]
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in settings_diff(a, b)]
        elif a != b:
            out.append(f"{k}: {a!r} then, {b!r} now")
    return out


def fine_differs(study: Any) -> bool:
    """Whether the study's fine trials train differently from its coarse ones.

    True when its settings give the fine stage recipe overrides (``[fine] set``) or
    another number of trainings per trial: then fine and coarse scores are not
    comparable (more cycles score higher; a mean over seeds is not a single lucky run).
    """
    from mlplab.search.space import fine_trains_differently

    space = (study.user_attrs.get(ATTR_SETTINGS) or {}).get("space", {})
    repeats = space.get("repeats", 1)
    return fine_trains_differently(
        space.get("fine_set") or {}, repeats, space.get("fine_repeats", repeats)
    )


def best_trial(study: Any) -> Any:
    """The COMPLETE, non-diverged trial of highest score (validation accuracy; the
    earliest on ties).

    Candidates are all such trials, or only the fine ones when the fine stage trains
    differently (:func:`fine_differs`) and has at least one.
    """
    from optuna.trial import TrialState

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and not t.user_attrs.get("diverged")
    ]
    fine = [t for t in done if t.user_attrs.get(STAGE) == "fine"]
    if fine and fine_differs(study):
        done = fine
    if not done:
        return None
    return max(done, key=lambda t: (t.value, -t.number))


def best_overrides(study: str, storage: str | None = None) -> dict[str, str]:
    """The best trial's searched fields as ``--set``-style text, e.g. ``{"lam": "0.00123"}``.

    ``storage`` defaults to the SQLite file ``mlplab search`` writes for ``study``:
    ``sqlite:///runs/<study>/study.db`` (relative to the working directory).
    """
    url = storage or default_storage(Path("runs") / study)
    st = open_storage(url, must_exist=True)
    s = load_study(study, st, url)
    t = best_trial(s)
    if t is None:
        raise MlplabError(f"study {study!r} in {redact(url)} has no finished trial yet")
    over = t.user_attrs.get("overrides")
    if isinstance(over, dict) and over:
        return {str(k): str(v) for k, v in over.items()}
    return {k: (repr(float(v)) if isinstance(v, float) else str(v)) for k, v in t.params.items()}


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a database error in the middle of a search into one clear :class:`MlplabError`."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as e:
        raise MlplabError(
            f"lost the search storage {redact(url)}: {_reason(e)}; run the command again "
            "to continue"
        ) from None


@contextlib.contextmanager
def locked(url: str, study: str) -> Iterator[StudyLock]:
    """``with locked(url, study):`` hold the study lock (and close it afterwards)."""
    lock = StudyLock(url, study)
    try:
        with lock:
            yield lock
    finally:
        lock.close()
