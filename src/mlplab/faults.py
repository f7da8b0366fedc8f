"""Fault injection for the kill-and-resume tests.

``MLPLAB_KILL_AT="<point>:<step>"`` makes the process SIGKILL itself when it
reaches ``point`` at update ``step`` (points: ``update`` after an update,
``checkpoint-start``, ``checkpoint-between`` (``.npz`` written, ``.json`` not),
``checkpoint-end``). Unset (always, outside the tests), it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("MLPLAB_KILL_AT")


def maybe_die(point: str, step: int) -> None:
    """SIGKILL this process if ``MLPLAB_KILL_AT`` names this point and step."""
    if _SPEC and _SPEC == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
