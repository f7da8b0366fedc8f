"""The host a number was measured on, the BLAS thread count a training runs with, and
processes that share its cores.

A GEMM's rounding depends on how BLAS splits it among threads and on the kernel it picks
for the CPU, so the thread count is a recorded setting (``threads`` in a recipe), the same
for a search trial and for ``mlplab train`` of the same configuration, and every result
file says which library, kernel and CPU produced it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mlplab.errors import MlplabError


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` BLAS threads (threadpoolctl), restoring the count after."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
