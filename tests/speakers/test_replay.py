"""The sliding anti-replay window."""

from __future__ import annotations

from speakers.agent.replay import ReplayWindow


def accept(window: ReplayWindow, cid: str, seq: int) -> str | None:
    reason = window.check(cid, seq)
    if reason is None:
        window.accept(cid, seq, expires_at=100.0)
    return reason


def test_in_order_and_swapped_order_both_accepted_once() -> None:
    window = ReplayWindow(width=8)
    assert accept(window, "a", 10) is None
    assert accept(window, "c", 12) is None
    assert accept(window, "b", 11) is None, "an older sequence inside the window is fine"
    assert accept(window, "b2", 11) == "replayed", "the same sequence twice is a replay"
    assert accept(window, "a", 99) == "replayed", "the same id twice is a replay"


def test_older_than_the_window_is_refused() -> None:
    window = ReplayWindow(width=8)
    accept(window, "a", 100)
    assert accept(window, "old", 93) is None
    assert accept(window, "older", 92) == "out_of_window"
    accept(window, "jump", 10_000)
    assert window.top == 10_000
    assert accept(window, "x", 9_993) is None
    assert accept(window, "y", 100) == "out_of_window"


def test_persisted_state_keeps_refusing() -> None:
    window = ReplayWindow()
    for i, seq in enumerate([5, 7, 6]):
        accept(window, f"id{i}", seq)
    restored = ReplayWindow.from_dict(window.to_dict())
    assert restored.check("new", 6) == "replayed"
    assert restored.check("id0", 50) == "replayed"
    assert restored.check("new", 8) is None


def test_prune_forgets_expired_ids_only() -> None:
    window = ReplayWindow()
    for i in range(100):
        window.accept(f"old{i}", i + 1, expires_at=10.0)
    window.accept("fresh", 200, expires_at=1000.0)
    window.prune(now=50.0)
    assert list(window.ids) == ["fresh"]
    assert window.check("x", 150) is None
    assert window.check("y", 100) == "replayed", "pruning ids keeps the sequence bitmap"
