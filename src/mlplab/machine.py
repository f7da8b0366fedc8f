"""The host a number was measured on, the BLAS thread count a training runs with (at most
the cores this process may use, :func:`check_threads`), processes that share its cores, and
long NumPy calls that a signal can interrupt (:func:`interruptible`).

A GEMM's rounding depends on how BLAS splits it among threads and on the kernel it picks
for the CPU, so the thread count is a recorded setting (``threads`` in a recipe), the same
for a search trial and for ``mlplab train`` of the same configuration, and every result
file says which library, kernel and CPU produced it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from mlplab.errors import ConfigError, MlplabError

T = TypeVar("T")


#: thread counts of the :func:`blas_threads` blocks now open, innermost last
_RUN_THREADS: list[int] = []


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` BLAS threads (threadpoolctl), restoring the count after.

    The parallel elementwise kernels (:mod:`mlplab.kernels`) follow the same count: inside
    the block :func:`run_threads` is ``n``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n), user_api="blas"):
        _RUN_THREADS.append(int(n))
        try:
            yield
        finally:
            _RUN_THREADS.pop()


def run_threads() -> int:
    """The threads a run's work may use: the count of the innermost :func:`blas_threads`
    block, else the BLAS library's own count when it was first asked (what
    ``OPENBLAS_NUM_THREADS`` or the core count gave the process), at most
    :func:`usable_cores`."""
    if _RUN_THREADS:
        return _RUN_THREADS[-1]
    return _process_blas_threads()


@functools.cache
def _process_blas_threads() -> int:
    from threadpoolctl import threadpool_info

    counts = [int(i.get("num_threads") or 1) for i in threadpool_info() if i["user_api"] == "blas"]
    return max(1, min(max(counts, default=1), usable_cores()))


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(n: int, cores: int | None = None) -> int:
    """``n`` if it is a BLAS thread count this host can run: an integer from 1 to the cores
    this process may use (``cores``, default :func:`usable_cores`, i.e.
    ``len(os.sched_getaffinity(0))``); else one :class:`ConfigError`. More threads than
    cores only wait for each other (``threads = 256`` on 2 cores: 40 updates in 96 s)."""
    cores = usable_cores() if cores is None else cores
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= cores:
        raise ConfigError(
            f"threads (BLAS threads) must be an integer in 1..{cores}, the cores this process "
            f"may use, got {n!r}"
        )
    return int(n)


def interruptible(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run in a helper thread while the main thread waits for it, so that a
    signal handler runs at once (Ctrl-C's ``KeyboardInterrupt``, a run's
    ``RunInterrupted``) instead of after one long NumPy call (a 3072 x 3072
    eigendecomposition takes seconds, and Python runs handlers only between calls). If the
    wait is interrupted, the helper finishes in the background and its result is dropped
    (see :func:`_leave_if_busy` for the exit). The BLAS thread count is process-wide, so
    the numbers are the same bits. Outside the main thread ``fn`` runs directly."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: an interrupted join marks the thread stopped

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the waiting thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=target, name="mlplab-interruptible", daemon=True).start()
    try:
        done.wait()  # a signal handler that raises interrupts this wait
    except BaseException:
        _INTERRUPTED.append(done)
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


#: The "done" events of :func:`interruptible` helpers whose wait was interrupted.
_INTERRUPTED: list[threading.Event] = []


@atexit.register  # registered when mlplab starts: it runs after the exit hooks added later
def _leave_if_busy() -> None:
    """At exit, with an interrupted helper still inside NumPy: leave at once, with exit
    status 130 (an interrupt) and stdout and stderr flushed. A normal exit would run
    OpenBLAS's exit handler, which joins and frees the threads and buffers the helper is
    using: the process hung (2 BLAS threads) or crashed with SIGSEGV (1 thread)."""
    if not all(done.is_set() for done in _INTERRUPTED):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(130)


def run_processes(
    target: Callable[..., object], calls: dict[str, tuple[Any, ...]]
) -> dict[str, int | None]:
    """Run ``target(*args)`` for each ``label: args`` of ``calls`` in a process of its own; wait
    for all and return their exit statuses. As the CLI does, a child turns an
    :class:`MlplabError` into one ``error: [label] ...`` line (exit status 2) and Ctrl-C or
    SIGTERM into exit status 130; it leaves at once if this process dies. If this one is
    interrupted, the children still running are terminated."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of BLAS threads or open connections
    procs = {
        label: ctx.Process(target=_child, args=(target, args, label, os.getpid()), daemon=True)
        for label, args in calls.items()
    }
    try:
        for p in procs.values():
            p.start()
        for p in procs.values():
            p.join()
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
                p.join(10)
    return {label: p.exitcode for label, p in procs.items()}


def _child(target: Callable[..., object], args: tuple[Any, ...], label: str, parent: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: KeyboardInterrupt
    try:
        target(*args)
    except MlplabError as e:
        print(f"error: [{label}] {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # the parent died: leave at once
        time.sleep(0.2)
    os._exit(3)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_facts(threads: int | None = None) -> dict[str, Any]:
    """CPU, cores, Python, NumPy and each BLAS library with its kernel and thread count.

    ``threads``: the BLAS threads the training ran with (the recipe's ``threads``).
    """
    from threadpoolctl import threadpool_info

    blas = [
        {
            "library": i.get("internal_api"),
            "version": i.get("version"),
            "architecture": i.get("architecture"),
            "threads_available": i.get("num_threads"),
        }
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "threads": threads,
    }


def host_line(facts: dict[str, Any]) -> str:
    """``AMD EPYC ..., 2 cores, OpenBLAS 0.3.31 SkylakeX, 1 BLAS thread`` for tables."""
    b = (facts.get("blas") or [{}])[0]
    lib = f"{b.get('library', '?')} {b.get('version', '')} {b.get('architecture') or ''}".strip()
    t = facts.get("threads")
    return f"{facts.get('cpu')}, {facts.get('usable_cores')} cores, {lib}" + (
        f", {t} BLAS thread{'s' if t != 1 else ''}" if t else ""
    )
