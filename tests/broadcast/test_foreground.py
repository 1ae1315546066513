"""Background threads stand aside while this process launches an alert; never longer than their limit."""

from __future__ import annotations

import threading
import time

from broadcast.foreground import Foreground


def test_a_background_wait_ends_when_the_foreground_work_ends() -> None:
    foreground = Foreground()
    assert foreground.wait_clear(5.0) == 0.0, "nothing runs: no wait at all"
    entered, release, waited = threading.Event(), threading.Event(), []

    def launch() -> None:
        with foreground.running(), foreground.running():  # nested work counts once each
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=launch)
    worker.start()
    assert entered.wait(10)
    background = threading.Thread(target=lambda: waited.append(foreground.wait_clear(30.0)))
    background.start()
    background.join(0.3)
    assert background.is_alive(), "it waits while the launch runs"
    assert foreground.waiting == 1
    ended = time.monotonic()
    release.set()
    worker.join(10)
    background.join(10)
    assert foreground.waiting == 0
    assert foreground.wait_clear(5.0) == 0.0, "over: no wait"
    assert 0.3 <= waited[0] < 0.3 + (time.monotonic() - ended) + 1.0, "released when the launch ended, not at 30 s"


def test_a_background_wait_is_bounded_by_its_limit() -> None:
    foreground = Foreground()
    with foreground.running():
        began = time.monotonic()
        waited = foreground.wait_clear(0.2)
    assert 0.2 <= waited <= time.monotonic() - began + 0.01
    assert waited < 2.0, "a stuck launch never stops the bookkeeping"
