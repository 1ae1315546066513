"""The receipt writer yields the CPU: applying receipts may lag a moment, a command's fan-out may not."""

from __future__ import annotations

import os
import threading

import pytest

from broadcast.priority import lower_priority
from broadcast.worker import WRITER_NICE

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priorities on this system")


def _nice(thread: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread)


def test_lower_priority_makes_only_the_calling_thread_nicer() -> None:
    before = _nice(threading.get_native_id())
    seen: dict[str, int] = {}

    def body() -> None:
        seen["start"] = _nice(threading.get_native_id())
        lower_priority(WRITER_NICE)
        seen["after"] = _nice(threading.get_native_id())

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen["start"] == before  # a new thread starts at its creator's priority
    assert seen["after"] == min(19, before + WRITER_NICE) > before
    assert _nice(threading.get_native_id()) == before  # the rest of the process keeps its priority
    assert WRITER_NICE == 10
