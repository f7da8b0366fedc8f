"""Fault injection for the kill-and-resume tests.

``MLPLAB_KILL_AT="<point>:<step>"`` makes the process SIGKILL itself when it
reaches ``point`` at update ``step`` (points: ``update`` after an update,
``checkpoint-start``, ``checkpoint-between`` (``.npz`` written, ``.json`` not),
``checkpoint-end``). ``MLPLAB_FAIL_AT="<point>:<step>"`` raises the ``OSError`` of a full
disk there instead. Unset (always, outside the tests), each costs one comparison.
"""

from __future__ import annotations

import errno
import os
import signal

_SPEC = os.environ.get("MLPLAB_KILL_AT")
_FAIL = os.environ.get("MLPLAB_FAIL_AT")


def maybe_die(point: str, step: int) -> None:
    """SIGKILL this process if ``MLPLAB_KILL_AT`` names this point and step."""
    if _SPEC and _SPEC == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
    if _FAIL and _FAIL == f"{point}:{step}":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"checkpoint of update {step}")
