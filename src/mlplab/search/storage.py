"""Where a study lives (an Optuna ``RDBStorage``: SQLite under ``--out`` for one machine,
PostgreSQL or MySQL for several), study names and settings, the best trial."""

from __future__ import annotations

import contextlib
import re
import shlex
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from mlplab.errors import MlplabError
from mlplab.search.space import STRATEGY_DEFAULTS, fine_differs

optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failure is reported by our error line
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
#: The study's user attribute of the settings it was started with; trial user attributes
#: (``pruned``: where the pruner stopped the trial, see :mod:`.strategies`).
ATTR_SETTINGS, STAGE, SLOT, PRUNED = "mlplab_search", "stage", "slot", "pruned"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_study_name(name: str) -> str:
    """``name`` if it is 1-64 letters, digits, ``.``, ``_``, ``-`` (not leading); else an error."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise MlplabError(
            f"study name {name!r} is not allowed: use 1-64 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return name


def default_study_name(recipe_name: str) -> str:
    """``assignment2/search`` -> ``assignment2-search`` (other characters become ``-``)."""
    return check_study_name(re.sub(r"[^A-Za-z0-9._-]", "-", recipe_name).lstrip("-._")[:64] or "s")


def default_storage(out: str | Path) -> str:
    """The SQLite URL of the study file under ``out`` (relative paths stay relative)."""
    return sqlite_url(Path(out) / "study.db")


def sqlite_url(path: str | Path) -> str:
    """``sqlite:///PATH`` with ``?``, ``%``, ``#`` escaped: the URL names exactly ``path``."""
    return URL.create("sqlite", database=Path(path).as_posix()).render_as_string(False)


def redact(url: str) -> str:
    """``url`` with its password hidden."""
    with contextlib.suppress(Exception):
        return make_url(url).render_as_string(hide_password=True)
    return url


def _reason(exc: BaseException) -> str:
    exc = exc.__cause__ or exc if type(exc).__name__ == "StorageInternalError" else exc
    lines = [ln.strip() for ln in str(getattr(exc, "orig", None) or exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def engine_url(url: str) -> str:
    """``postgresql://`` as ``postgresql+psycopg://``: psycopg 3, the driver of the ``postgres``
    extra, where SQLAlchemy would pick psycopg2 (a URL naming its driver is kept)."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///FILE`` URL (in a directory that exists), else ``None``."""
    if not url.startswith("sqlite:"):
        return None
    db = make_url(url).database
    if not db or db == ":memory:":
        raise MlplabError("search storage sqlite:///:memory: cannot be shared; give a file")
    if not Path(db).parent.is_dir():
        raise MlplabError(f"cannot reach search storage {url}: no directory {Path(db).parent}")
    return Path(db)


def retry_stale(study: Any, trial: Any) -> None:
    """Optuna's retry callback, also recording the failed trials' numbers as ``retry_of``
    (``trial`` may be changed: Optuna passes a copy, and RDB storages build each anew)."""
    before = trial.user_attrs.get("retry_of", [])
    trial.user_attrs = {**trial.user_attrs, "retry_of": [*before, trial.number]}
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)


def _serialise_sqlite(storage: Any) -> Any:
    """Begin every SQLite transaction with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite recipe):
    Optuna pops a WAITING trial by reading it and setting it RUNNING, relying on ``SELECT ...
    FOR UPDATE``, which SQLite ignores, so two processes could pop the same trial."""

    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own

    sqlalchemy.event.listen(storage.engine, "connect", connect)
    sqlalchemy.event.listen(storage.engine, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
    storage.engine.dispose()  # connections made before the listeners are not reused
    return storage


def open_storage(
    url: str, *, heartbeat: int | None = None, grace: int | None = None, must_exist: bool = False
) -> Any:
    """An Optuna ``RDBStorage`` for ``url`` (heartbeat and retry when ``heartbeat`` is given)."""
    reach = f"cannot reach search storage {redact(url)}"
    path = sqlite_path(url)
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if path is not None:
        if must_exist and not path.is_file():
            raise MlplabError(f"no search study database {path} (run `mlplab search` first)")
        engine["connect_args"] = {"timeout": 120}
    elif url.startswith(("postgresql", "postgres:")):
        engine["connect_args"] = {"connect_timeout": 15}
    elif not url.startswith("mysql"):
        raise MlplabError(
            f"unsupported search storage {redact(url)}: use sqlite:///FILE, "
            "postgresql://USER:PASSWORD@HOST:PORT/DB or mysql://..."
        )
    beat: dict[str, Any] = {}
    if heartbeat:
        beat = {"heartbeat_interval": heartbeat, "grace_period": grace}
        beat["heartbeat_stale_trial_callback"] = retry_stale
    for attempt in range(4):  # machines started together may race to create the tables
        try:
            st = optuna.storages.RDBStorage(  # reading an existing study creates no table
                engine_url(url), engine_kwargs=engine, skip_table_creation=must_exist, **beat
            )
            return st if path is None else _serialise_sqlite(st)
        except ImportError as e:
            hint = "pymysql" if url.startswith("mysql") else "'psycopg[binary]'"
            if url.startswith("postgresql+psycopg2"):  # the URL names the older driver
                hint = "psycopg2-binary, or drop '+psycopg2' from the URL (psycopg 3)"
            raise MlplabError(
                f"{reach}: database driver missing ({e}); pip install {hint}"
            ) from None
        except Exception as e:  # sqlalchemy OperationalError, IntegrityError, ...
            if attempt == 3 or "connect" in str(e).lower():
                raise MlplabError(f"{reach}: {_reason(e)}") from None
            time.sleep(0.3 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """A database error in the middle of a search becomes one clear :class:`MlplabError`."""
    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise MlplabError(
            f"lost the search storage {redact(url)}: {_reason(e)}; run the command again to "
            "continue (if this persists, the database is damaged or not an Optuna study)"
        ) from None


def settings_diff(old: Any, new: Any, at: str = "") -> list[str]:
    """Human descriptions of the differences between two settings trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in settings_diff(old.get(k), new.get(k), f"{at}{k}.")]
    return [] if old == new else [f"{at.rstrip('.')}: {old!r} then, {new!r} now"]


def finished(trial: Any) -> bool:
    """Whether ``trial`` took its slot for good: COMPLETE, or PRUNED by the pruner (not a
    duplicate or spare trial, which are pruned before they train)."""
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.PRUNED and PRUNED in trial.user_attrs
    )


def _with_defaults(settings: Any) -> Any:
    """``settings`` with the default sampler and pruner filled in (a study started before
    they existed, or with the defaults, has none stored)."""
    if isinstance(settings, dict) and isinstance(settings.get("space"), dict):
        return {**settings, "space": {**STRATEGY_DEFAULTS, **settings["space"]}}
    return settings


def open_study(
    name: str, storage: Any, url: str, settings: dict[str, Any], restart: str
) -> tuple[Any, str]:
    """Create or load study ``name``, and why a stored one was deleted (``""``: none was).
    Other settings are an error unless ``restart`` is ``changed`` (delete that study) or
    ``always`` (delete any)."""
    kw = {"study_name": name, "storage": storage, "direction": "maximize"}
    kw["sampler"] = optuna.samplers.RandomSampler(0)  # never asked: every trial is enqueued
    study = optuna.create_study(**kw, load_if_exists=True)
    stored = study.user_attrs.get(ATTR_SETTINGS)
    diffs = (
        [] if stored is None else settings_diff(_with_defaults(stored), _with_defaults(settings))
    )
    deleted = ""
    if stored is not None and (restart == "always" or (restart == "changed" and diffs)):
        deleted = "; ".join(diffs[:4]) or "asked for"
        optuna.delete_study(study_name=name, storage=storage)
        study, stored = optuna.create_study(**kw), None
    elif diffs:
        raise MlplabError(
            f"study {name!r} in {redact(url)} was started with other settings "
            f"({'; '.join(diffs[:4])}); use the same recipe and options, another "
            "--study, or --restart changed to replace it"
        )
    if stored is None:
        study.set_user_attr(ATTR_SETTINGS, settings)
    return study, deleted


def best_trial(study: Any) -> Any:
    """The COMPLETE, non-diverged trial of highest score (earliest on ties), or ``None``;
    only fine ones when they train differently (their scores are not comparable). A pruned
    trial is never the best: its value is a partial training's."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [t for t in done if STAGE in t.user_attrs and not t.user_attrs.get("diverged")]
    space = (study.user_attrs.get(ATTR_SETTINGS) or {}).get("space", {})
    fine = [t for t in done if t.user_attrs[STAGE] == "fine"]
    done = fine if fine and fine_differs(space) else done
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def best_overrides(study: str, storage: str | None = None) -> dict[str, str]:
    """The best trial's searched fields as ``--set`` text, e.g. ``{"lam": "0.00123"}``
    (``storage``: by default the study of the default ``--out``, ``runs/<study>/study.db``)."""
    url = storage or default_storage(Path("runs") / check_study_name(study))
    st = open_storage(url, must_exist=True)
    try:
        with storage_errors(url):
            if study not in (names := optuna.get_all_study_names(st)):
                have = ", ".join(names) or "none"
                raise MlplabError(f"no study {study!r} in {redact(url)} (studies there: {have})")
            t = best_trial(optuna.load_study(study_name=study, storage=st))
    finally:
        st.engine.dispose()
    if t is None:
        raise MlplabError(f"study {study!r} in {redact(url)} has no finished trial yet")
    return {str(k): str(v) for k, v in t.user_attrs["overrides"].items()}


def follow_up(final: str, study: str, url: str) -> str:
    """``mlplab train --from-study``, shell-quoted; ``--storage`` if not the default."""
    cmd = ["mlplab", "train", "--recipe", final or "RECIPE", "--from-study", study]
    if url != default_storage(Path("runs") / study):
        path = sqlite_path(url)
        cmd += ["--storage", sqlite_url(path.resolve()) if path else redact(url)]
    return shlex.join(cmd)
