"""CPU priority of background threads: work that may lag a moment yields to work that may not (a fan-out)."""

from __future__ import annotations

import contextlib
import os
import threading


def lower_priority(increment: int) -> None:
    """Make the calling thread `increment` nicer (Linux keeps a nice value per thread); best effort elsewhere."""
    if not hasattr(os, "setpriority"):
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + increment))
