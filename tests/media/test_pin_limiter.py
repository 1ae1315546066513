"""Pins of the true-peak limiter on short synthetic signals: ceiling, gain only where needed, look-ahead, release."""

from __future__ import annotations

import numpy as np
import pytest

from media.analyze import block_edges, block_lengths
from media.limiter import (
    FUTURE,
    HISTORY,
    LOOKAHEAD_MS,
    BlockLimiter,
    BlockPeaks,
    GainComputer,
    cover_previous,
    lookahead_blocks,
    oversampled_extremes,
    sliding_min,
    true_peak_envelope,
)

SR = 24000
ULEN = 240  # one 10 ms unit at 24 kHz: ten 1 ms blocks of 24 samples


def _peaks(x: np.ndarray, ulen: int = ULEN) -> np.ndarray:
    """Block peaks (units x 10) as the analysis pass measures them."""
    env = true_peak_envelope(np.concatenate((x, np.zeros(FUTURE))), np.zeros(HISTORY))
    return np.maximum.reduceat(env.reshape(-1, ulen), block_edges(ulen), axis=1)


def _limit(x: np.ndarray, ceiling_db: float, chunk: int = 40, ulen: int = ULEN, **kw: float) -> tuple:
    """Run X through a BlockLimiter in CHUNK-unit pieces; (output, gains, limiter)."""
    peaks = _peaks(x, ulen)
    lim = BlockLimiter(block_lengths(ulen), ceiling_db, sample_rate=ulen * 100, **kw)
    ys, gs = [], []
    for u in range(0, len(peaks), chunk):
        y, g = lim.process(x[u * ulen : (u + chunk) * ulen], peaks[u : u + chunk])
        ys.append(y)
        gs.append(g)
    y, g = lim.flush()
    return np.concatenate([*ys, y]), np.concatenate([*gs, g]), lim


def _burst(seconds: float = 1.0, start_s: float = 0.5, length_s: float = 0.1, loud: float = 1.0) -> np.ndarray:
    """A quiet 500 Hz tone (0.1) with one loud stretch of the same tone."""
    t = np.arange(int(SR * seconds)) / SR
    level = np.where((t >= start_s) & (t < start_s + length_s), loud, 0.1)
    return np.sin(2 * np.pi * 500 * t) * level


def test_a_signal_under_the_ceiling_passes_untouched() -> None:
    x = _burst(loud=0.1)
    y, g, lim = _limit(x, -1.0)
    assert y.size == x.size
    np.testing.assert_array_equal(g, np.ones_like(g))
    np.testing.assert_array_equal(y, x)
    assert lim.max_reduction_db == 0.0


@pytest.mark.parametrize("ceiling_db", [-1.0, -6.0])
def test_the_true_peak_stays_under_the_ceiling(ceiling_db: float) -> None:
    x = _burst(loud=1.5)
    y, g, lim = _limit(x, ceiling_db)
    peak_db = 20 * np.log10(_peaks(y).max())
    assert peak_db <= ceiling_db + 0.05
    assert peak_db > ceiling_db - 0.5  # limited to the ceiling, not far below it
    # the loud part needed 20 log10(1.5) - ceiling dB, and that is what the limiter reports
    assert lim.max_reduction_db == pytest.approx(20 * np.log10(1.5) - ceiling_db, abs=0.3)
    assert g.min() == pytest.approx(10 ** (ceiling_db / 20) / 1.5, rel=0.05)


def test_gain_is_reduced_only_around_the_loud_part() -> None:
    x = _burst(loud=1.5)
    _, g, _ = _limit(x, -1.0)
    t = np.arange(g.size) / SR
    assert (g[t < 0.49] == 1.0).all()  # before the look-ahead reaches the burst
    assert (g[(t > 0.51) & (t < 0.59)] < 0.6).all()  # the burst itself
    assert (g[t > 0.75] == 1.0).all()  # released afterwards


def test_the_gain_falls_ahead_of_the_burst_within_the_lookahead() -> None:
    x = _burst(loud=1.5)
    _, g, _ = _limit(x, -1.0)
    first = int(np.flatnonzero(g < 1.0)[0]) / SR
    # the gain starts falling about one look-ahead (5 ms, plus a block) before the loud samples
    assert 0.5 - (LOOKAHEAD_MS + 2) / 1000 <= first < 0.5 - (LOOKAHEAD_MS - 2) / 1000
    onset = int(0.5 * SR)
    assert g[onset] < 0.6  # fully down when the burst arrives
    assert np.abs(np.diff(g)).max() < 0.01  # no steps


def test_a_longer_lookahead_starts_earlier() -> None:
    x = _burst(loud=1.5)
    _, g, _ = _limit(x, -1.0, lookahead_ms=20.0)
    first = int(np.flatnonzero(g < 1.0)[0]) / SR
    assert 0.5 - 0.022 <= first < 0.5 - 0.018


def test_the_release_is_limited_to_its_rate() -> None:
    x = _burst(loud=1.5)
    _, g, _ = _limit(x, -1.0, release_db_s=80.0)
    db = 20 * np.log10(g)
    after = int(0.6 * SR)
    rise = np.diff(db[after:])
    assert rise.max() <= 80.0 / SR * 1.01 + 1e-9  # never faster than 80 dB/s
    # 4.5 dB of reduction released at 80 dB/s takes about 56 ms (plus the hold)
    back = int(np.flatnonzero(g[after:] < 1.0)[-1]) / SR
    assert 0.05 < back < 0.075
    _, fast, _ = _limit(x, -1.0, release_db_s=400.0)
    assert int(np.flatnonzero(fast[after:] < 1.0)[-1]) / SR < 0.03


def test_float64_input_stays_float64_and_float32_stays_float32() -> None:
    x = _burst(loud=1.5)
    y64, g64, _ = _limit(x, -1.0)
    assert y64.dtype == np.float64
    assert g64.dtype == np.float64
    y32, _, _ = _limit(x.astype(np.float32), -1.0)
    assert y32.dtype == np.float32
    y16, _, _ = _limit((x * 1000).astype(np.int16), 59.0)
    assert y16.dtype == np.float32


def test_unequal_blocks_limit_like_equal_ones() -> None:
    ulen = 441  # 44.1 kHz: blocks of 44 and 45 samples
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 500 * t) * np.where((t >= 0.5) & (t < 0.6), 1.5, 0.1)
    y, g, _ = _limit(x, -1.0, chunk=7, ulen=ulen)
    assert y.size == x.size
    np.testing.assert_allclose(y, x * g)
    assert 20 * np.log10(_peaks(y, ulen).max()) <= -1.0 + 0.05
    assert (g[t < 0.49] == 1.0).all()
    assert np.abs(np.diff(g)).max() < 0.01
    first = int(np.flatnonzero(g < 1.0)[0]) / 44100
    assert 0.5 - 0.007 <= first < 0.5 - 0.003


def test_flush_of_an_unused_limiter_is_empty() -> None:
    lim = BlockLimiter(block_lengths(ULEN), -1.0, sample_rate=SR)
    y, g = lim.flush()
    assert y.size == 0
    assert g.size == 0


def test_lookahead_blocks_is_at_least_two() -> None:
    assert lookahead_blocks(0.001) == 5
    assert lookahead_blocks(0.001, 20.0) == 20
    assert lookahead_blocks(0.001, 0.5) == 2
    assert lookahead_blocks(0.01) == 2
    assert lookahead_blocks(0.001, 3.5) == 4  # rounded to the nearest block


def test_cover_previous_takes_the_lower_need_of_each_pair() -> None:
    need, last = cover_previous(np.array([0.0, -3.0, 0.0, -1.0, 0.0]), -2.0)
    np.testing.assert_array_equal(need, [-2.0, -3.0, -3.0, -1.0, -1.0])
    assert last == 0.0
    empty, kept = cover_previous(np.zeros(0), -4.0)
    assert empty.size == 0
    assert kept == -4.0


def test_gain_computer_never_exceeds_the_need_and_holds() -> None:
    comp = GainComputer(4, 1.0)
    need = np.zeros(30)
    need[10] = -6.0
    g = np.concatenate((comp.feed(need[:7]), comp.feed(need[7:]), comp.flush()))
    assert g.size == need.size  # flush releases the width - 1 steps held back
    db = 20 * np.log10(g)
    assert db[10] <= -6.0 + 1e-9  # the step that needs -6 dB gets it
    assert (db[:7] == 0.0).all()
    assert db[7] < 0.0  # the fall starts width - 1 steps ahead
    assert (db[7:10] > -6.0).all()
    assert comp.max_reduction_db == pytest.approx(6.0)
    assert db.max() <= 0.0


def test_gain_computer_release_climbs_one_step_at_a_time() -> None:
    comp = GainComputer(2, 1.0)
    need = np.zeros(20)
    need[2] = -10.0
    g = np.concatenate((comp.feed(need), comp.flush()))
    db = 20 * np.log10(g)
    # held for two steps at -10, then released by 1 dB per step
    r = np.concatenate(([0, 0], [-10, -10], -10 + np.arange(1, 11), np.zeros(7)))
    expected = 20 * np.log10((10 ** (r[:-1] / 20) + 10 ** (r[1:] / 20)) / 2)
    assert db.size == need.size
    np.testing.assert_allclose(db, np.minimum(expected, 0.0)[: db.size], atol=1e-9)


def test_gain_computer_release_carries_across_feeds() -> None:
    whole = GainComputer(2, 1.0)
    parts = GainComputer(2, 1.0)
    need = np.zeros(20)
    need[3] = -10.0
    a = np.concatenate((whole.feed(need), whole.flush()))
    b = np.concatenate((parts.feed(need[:5]), parts.feed(need[5:6]), parts.feed(need[6:]), parts.flush()))
    np.testing.assert_allclose(b, a, rtol=1e-12)
    assert parts.feed(np.zeros(0)).size == 0


@pytest.mark.parametrize("width", [3, 16, 17, 32, 50])
def test_sliding_min_of_every_window(width: int) -> None:
    values = np.random.default_rng(width).normal(size=97)
    expected = np.array([values[i : i + width].min() for i in range(len(values) - width + 1)])
    np.testing.assert_array_equal(sliding_min(values, width), expected)
    np.testing.assert_array_equal(sliding_min(values[:width], width), [values[:width].min()])


def test_sliding_min_with_an_exact_multiple_of_the_width() -> None:
    values = np.arange(40.0)[::-1]
    np.testing.assert_array_equal(sliding_min(values, 20), values[19:])


def test_oversampled_extremes_include_the_samples_and_points_between() -> None:
    n = 64
    rng = np.random.default_rng(9)
    x = rng.normal(0, 0.3, n + HISTORY + FUTURE).astype(np.float32)
    hi, lo = oversampled_extremes(x, n)
    samples = x[HISTORY : HISTORY + n]
    assert (hi >= samples).all()
    assert (lo <= samples).all()
    # the exact interpolated points, computed sample by sample from the windowed-sinc definition
    j = np.arange(-7, 9)
    for k in (0, 17, 63):
        window = x[k : k + 16].astype(np.float64)
        points = [samples[k]]
        for f in (0.25, 0.5, 0.75):
            arg = j - f
            points.append(float((np.sinc(arg) * (0.5 + 0.5 * np.cos(np.pi * arg / 9)) * window).sum()))
        assert hi[k] == pytest.approx(max(points), abs=1e-5)
        assert lo[k] == pytest.approx(min(points), abs=1e-5)


def test_a_single_impulse_rings_between_the_samples() -> None:
    x = np.zeros(40, dtype=np.float32)
    x[20] = 1.0
    env = true_peak_envelope(x, np.zeros(HISTORY))
    assert env.shape == (40 - FUTURE,)
    assert env[20] == pytest.approx(1.0)
    assert env[19] > 0.8  # the point at 19.75 is close to the impulse
    assert env[19] < 1.0
    assert env[:10].max() < 0.05
    assert env.dtype == np.float64


def test_true_peak_envelope_pads_a_short_future_with_silence() -> None:
    x = np.zeros(30)
    x[-1] = 1.0  # the last sample: its neighbours after it are missing
    env = true_peak_envelope(x, np.zeros(20), future=0)
    assert env.shape == (30,)
    assert env[-1] == pytest.approx(1.0)
    short = true_peak_envelope(x, np.zeros(20), future=3)
    np.testing.assert_allclose(short, env[:27], atol=1e-6)
    assert true_peak_envelope(np.zeros(8), np.zeros(7)).size == 0


def test_true_peak_envelope_reads_only_the_last_history_samples() -> None:
    x = np.zeros(20)
    history = np.zeros(30)
    history[:23] = 5.0  # everything before the last seven samples is ignored
    assert true_peak_envelope(x, history).max() == 0.0
    history[-1] = 1.0
    assert true_peak_envelope(x, history)[0] > 0.1


@pytest.mark.parametrize("ulen", [240, 441])
def test_block_peaks_lag_one_feed_and_flush_the_rest(ulen: int) -> None:
    meter = BlockPeaks(block_lengths(ulen))
    assert meter.flush().shape == (0, 10)
    x = np.zeros(3 * ulen, dtype=np.float32)
    x[ulen + 5] = 0.5  # second unit, first block
    assert meter.feed(x[:ulen]).shape == (0, 10)
    first = meter.feed(x[ulen:])
    assert first.shape == (1, 10)
    assert first.max() < 0.01
    rest = meter.flush()
    assert rest.shape == (2, 10)
    assert rest[0, 0] == pytest.approx(0.5)
    assert rest[0, 1:].max() < 0.5
    assert meter.flush().shape == (0, 10)


def test_block_peaks_see_a_negative_peak() -> None:
    meter = BlockPeaks(block_lengths(ULEN))
    x = np.zeros(ULEN, dtype=np.float32)
    x[100] = -0.7
    meter.feed(x)
    peaks = meter.flush()
    assert peaks[0].max() == pytest.approx(0.7, rel=1e-5)
    assert int(np.argmax(peaks[0])) == 4  # samples 96..119 are the fifth 1 ms block


def _model_gains(x: np.ndarray, ceiling_db: float, ulen: int, lookahead_ms: float = LOOKAHEAD_MS) -> np.ndarray:
    """Per-sample gains as documented: one gain per block from what each block (and the one after it)
    needs, held and smoothed by a GainComputer, ramped linearly inside each block, flat in the last."""
    lengths = np.tile(block_lengths(ulen), len(x) // ulen)
    need = np.minimum(0.0, ceiling_db - 20 * np.log10(np.maximum(_peaks(x, ulen).ravel(), 1e-12)))
    covered, _ = cover_previous(need, 0.0)
    comp = GainComputer(lookahead_blocks(0.001, lookahead_ms), 80.0 / 1000)
    g = np.concatenate((comp.feed(covered), comp.flush()))
    g = np.append(g, g[-1])
    frac = np.concatenate([np.arange(n) / n for n in lengths])
    return np.repeat(g[:-1], lengths) + np.repeat(np.diff(g), lengths) * frac


@pytest.mark.parametrize(("ulen", "lookahead_ms"), [(240, 5.0), (441, 5.0), (441, 3.0)])
def test_gains_are_block_gains_ramped_inside_each_block(ulen: int, lookahead_ms: float) -> None:
    sr = ulen * 100
    t = np.arange(sr) / sr
    # loud bursts, the last one reaching the very end: the final gains are still moving
    x = np.sin(2 * np.pi * 500 * t) * np.where((t % 0.3 < 0.05) | (t > 0.993), 1.6, 0.1)
    _, g, _ = _limit(x, -1.0, chunk=9, ulen=ulen, lookahead_ms=lookahead_ms)
    np.testing.assert_allclose(g, _model_gains(x, -1.0, ulen, lookahead_ms), rtol=1e-9, atol=1e-12)


def test_a_signal_loud_to_its_last_sample_stays_under_the_ceiling() -> None:
    t = np.arange(SR // 2) / SR
    x = np.sin(2 * np.pi * 500 * t) * np.where(t < 0.02, 0.1, 1.5)
    y, _, _ = _limit(x, -1.0)
    assert 20 * np.log10(_peaks(y).max()) <= -1.0 + 0.05


def test_the_limiter_holds_back_only_its_lookahead() -> None:
    x = _burst(loud=1.5)
    lim = BlockLimiter(block_lengths(ULEN), -1.0, sample_rate=SR)
    y, g = lim.process(x[: 10 * ULEN], _peaks(x)[:10])
    # 100 blocks in, 5 blocks of look-ahead held back, and the last ready block waits for its successor
    assert y.size == (100 - 4 - 1) * 24
    assert g.size == y.size


def test_the_default_release_is_80_db_per_second() -> None:
    x = _burst(loud=1.5)
    _, g, _ = _limit(x, -1.0)
    _, explicit, _ = _limit(x, -1.0, release_db_s=80.0)
    np.testing.assert_array_equal(g, explicit)
    _, other, _ = _limit(x, -1.0, release_db_s=81.0)
    assert not np.array_equal(g, other)


def test_an_unused_limiter_flushes_float32() -> None:
    y, g = BlockLimiter(block_lengths(ULEN), -1.0, sample_rate=SR).flush()
    assert y.dtype == np.float32
    assert g.dtype == np.float32


def test_the_envelope_is_computed_in_float32_whatever_the_input() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.3, 200)
    history = rng.normal(0, 0.3, 7)
    exact32 = true_peak_envelope(x.astype(np.float32), history.astype(np.float32))
    np.testing.assert_array_equal(true_peak_envelope(x, history), exact32)
    # a short future is padded with float32 silence: the same as passing the zeros
    padded = np.concatenate((x.astype(np.float32), np.zeros(FUTURE, dtype=np.float32)))
    np.testing.assert_array_equal(true_peak_envelope(x, history, future=0), true_peak_envelope(padded, history))


def test_one_sample_with_its_future_has_one_peak() -> None:
    x = np.zeros(FUTURE + 1)
    x[0] = 0.5
    env = true_peak_envelope(x, np.zeros(HISTORY))
    assert env.shape == (1,)
    assert env[0] == pytest.approx(0.5)


@pytest.mark.parametrize("width", [2, 4])
def test_gain_computer_fed_one_step_at_a_time(width: int) -> None:
    need = np.zeros(12)
    need[6] = -6.0
    whole = GainComputer(width, 1.0)
    expected = np.concatenate((whole.feed(need), whole.flush()))
    single = GainComputer(width, 1.0)
    outs = [single.feed(need[i : i + 1]) for i in range(need.size)]
    # nothing until the look-ahead is full, then one gain per step
    assert [o.size for o in outs] == [0] * (width - 1) + [1] * (need.size - width + 1)
    got = np.concatenate([*outs, single.flush()])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_fed_one_block_at_a_time_it_returns_one_block_per_call() -> None:
    x = _burst(loud=1.5)[: 40 * 24]
    peaks = _peaks(x).reshape(-1, 1)  # any unit pattern: here one 1 ms block per unit
    lim = BlockLimiter(np.array([24]), -1.0, sample_rate=SR)
    sizes = [lim.process(x[b * 24 : (b + 1) * 24], peaks[b : b + 1])[0].size for b in range(40)]
    # five blocks of look-ahead, one waiting for its successor, then a block per call
    assert sizes == [0] * 5 + [24] * 35


def test_block_peaks_are_float32_whatever_the_input() -> None:
    x = np.random.default_rng(3).normal(0, 0.3, 3 * ULEN)
    ref = BlockPeaks(block_lengths(ULEN))
    expected = [ref.feed(x[:ULEN].astype(np.float32)), ref.feed(x[ULEN:].astype(np.float32)), ref.flush()]
    meter = BlockPeaks(block_lengths(ULEN))
    got = [meter.feed(x[:ULEN]), meter.feed(x[ULEN:]), meter.flush()]
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float32  # the analysis keeps a float32 (units x 10) summary
        np.testing.assert_array_equal(g, e)
