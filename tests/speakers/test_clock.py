"""NTP-style offset estimation."""

from __future__ import annotations

from speakers.agent.clock import ClockSync
from speakers.messages import TimeReply


def exchange(clock: ClockSync, t1: float, server_offset: float, out_s: float, back_s: float) -> None:
    nonce, sent = clock.request(now=t1)
    t2 = t1 + out_s + server_offset
    t3 = t2 + 0.001
    clock.on_reply(TimeReply("s", nonce, sent, t2, t3), t4=t3 - server_offset + back_s)


def test_symmetric_delay_gives_exact_offset() -> None:
    clock = ClockSync()
    assert not clock.synced
    assert clock.offset == 0.0
    exchange(clock, 100.0, server_offset=2.5, out_s=0.05, back_s=0.05)
    assert clock.synced
    assert abs(clock.offset - 2.5) < 1e-9
    assert abs((clock.rtt or 0) - 0.1) < 1e-9


def test_shortest_round_trip_wins() -> None:
    clock = ClockSync()
    exchange(clock, 100.0, server_offset=-1.0, out_s=0.400, back_s=0.010)  # queued on the way out: bad
    exchange(clock, 101.0, server_offset=-1.0, out_s=0.006, back_s=0.004)  # quick: good
    exchange(clock, 102.0, server_offset=-1.0, out_s=0.010, back_s=0.300)
    assert abs(clock.offset - -1.0) < 0.002
    assert abs(clock.to_local(1000.0) - (1000.0 - clock.offset)) < 1e-9


def test_unknown_or_replayed_replies_are_ignored() -> None:
    clock = ClockSync()
    nonce, t1 = clock.request(now=10.0)
    assert clock.on_reply(TimeReply("s", "f" * 16, t1, 11, 11), t4=10.1) is None
    assert clock.on_reply(TimeReply("s", nonce, t1 + 1, 11, 11), t4=10.1) is None, "t1 must echo ours"
    nonce, t1 = clock.request(now=10.0)
    assert clock.on_reply(TimeReply("s", nonce, t1, 11, 11), t4=10.1) is not None
    assert clock.on_reply(TimeReply("s", nonce, t1, 11, 11), t4=10.1) is None, "each nonce answers once"


def test_slow_exchanges_are_ignored() -> None:
    clock = ClockSync(max_rtt_s=0.5)
    exchange(clock, 100.0, server_offset=3.0, out_s=0.9, back_s=0.01)
    assert not clock.synced, "a 0.9 s round trip could be off by 0.45 s"
    exchange(clock, 101.0, server_offset=3.0, out_s=0.02, back_s=0.02)
    assert abs(clock.offset - 3.0) < 1e-9
