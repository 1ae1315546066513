"""Pins of the anti-replay window: its edges, its bounded size and its persisted form (killing mutmut survivors)."""

from __future__ import annotations

from speakers.agent.replay import WINDOW, ReplayWindow


def take(window: ReplayWindow, cid: str, seq: int, expires_at: float = 100.0) -> str | None:
    """Check and, when fresh, accept."""
    reason = window.check(cid, seq)
    if reason is None:
        window.accept(cid, seq, expires_at)
    return reason


def test_a_new_window_is_empty_and_persists_as_such() -> None:
    assert ReplayWindow().to_dict() == {"width": WINDOW, "top": 0, "bitmap": "0", "ids": {}}
    assert WINDOW == 1024
    restored = ReplayWindow.from_dict({})
    assert (restored.width, restored.top, restored.bitmap, restored.ids) == (WINDOW, 0, 0, {})


def test_the_highest_sequence_again_is_a_replay_even_under_a_new_id() -> None:
    window = ReplayWindow(width=8)
    assert take(window, "a", 5) is None
    assert window.check("b", 5) == "replayed"
    assert window.check("b", 6) is None


def test_accepting_an_older_sequence_keeps_the_newer_ones_marked() -> None:
    window = ReplayWindow(width=8)
    for cid, seq in (("a", 10), ("c", 12), ("b", 11)):
        assert take(window, cid, seq) is None
    for seq in (10, 11, 12):
        assert window.check(f"new-{seq}", seq) == "replayed", seq
    assert window.check("new-9", 9) is None


def test_a_jump_beyond_the_window_marks_only_the_new_top() -> None:
    window = ReplayWindow(width=8)
    take(window, "a", 1)
    take(window, "far", 1 + 8 + 5)
    assert window.bitmap == 1
    assert window.check("just-below", 13) is None, "never accepted, so not a replay"
    exactly = ReplayWindow(width=8)
    take(exactly, "a", 1)
    take(exactly, "b", 9)  # a shift of exactly the width
    assert exactly.bitmap == 1


def test_the_bitmap_never_grows_beyond_the_window() -> None:
    window = ReplayWindow(width=16)
    for seq in range(1, 200):
        assert take(window, f"id{seq}", seq) is None
    assert window.bitmap == (1 << 16) - 1, "exactly the last 16 sequences are marked"
    assert window.bitmap.bit_length() <= window.width


def test_the_persisted_form_is_hex_and_round_trips() -> None:
    window = ReplayWindow(width=32)
    for seq in (1, 2, 3, 4, 5, 9):  # bit i marks top - i: 0b1_1111_0001 = 0x1f1, a hex letter included
        take(window, f"id{seq}", seq)
    data = window.to_dict()
    assert data == {"width": 32, "top": 9, "bitmap": "1f1", "ids": {f"id{s}": 100.0 for s in (1, 2, 3, 4, 5, 9)}}
    restored = ReplayWindow.from_dict(data)
    assert (restored.width, restored.top, restored.bitmap) == (32, 9, 0x1F1)
    assert restored.ids == window.ids
    assert ReplayWindow.from_dict({**data, "bitmap": "ff"}).bitmap == 255


def test_prune_starts_above_64_ids_and_keeps_those_expiring_now() -> None:
    window = ReplayWindow()
    for i in range(64):
        window.accept(f"old{i}", i + 1, expires_at=10.0)
    window.prune(now=50.0)
    assert len(window.ids) == 64, "64 ids are cheap: nothing pruned"
    window.accept("now", 100, expires_at=50.0)
    window.prune(now=50.0)
    assert list(window.ids) == ["now"], "65 ids: the expired go, one expiring this instant stays"
