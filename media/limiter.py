"""A streaming look-ahead true-peak limiter in numpy: bounded memory, no per-sample Python loop."""

from __future__ import annotations

import numpy as np

_TAPS_HALF = 8  # interpolation window: 16 input samples around each fractional position
_FRACTIONS = (0.25, 0.5, 0.75)  # 4x oversampling: the three points between two samples


def _interp_taps() -> np.ndarray:
    """Windowed-sinc taps (3 x 16) that interpolate x at k + f from x[k-7 .. k+8]."""
    j = np.arange(-_TAPS_HALF + 1, _TAPS_HALF + 1, dtype=np.float64)
    rows = []
    for f in _FRACTIONS:
        arg = j - f
        window = 0.5 + 0.5 * np.cos(np.pi * arg / (_TAPS_HALF + 1))
        rows.append(np.sinc(arg) * window)
    return np.asarray(rows)


_TAPS = _interp_taps()
_DB_TO_NEPER = np.log(10.0) / 20  # exp(db * this) == 10 ** (db / 20), and cheaper


_TAPS_F32 = _TAPS.astype(np.float32)
# The interpolator is symmetric: the 0.5 taps are a palindrome and the 0.75 taps are the 0.25 taps
# reversed. With s_m = b[m] + b[15-m] and d_m = b[m] - b[15-m] (m < 8), the three points cost 24
# multiply-adds per sample instead of 48: i50 = sum(c50 s), i25 = sum(p s) + sum(q d), i75 = sum(p s) - sum(q d).
_C50 = _TAPS_F32[1, :_TAPS_HALF]
_P25 = ((_TAPS[0, :_TAPS_HALF] + _TAPS[0, : _TAPS_HALF - 1 : -1]) / 2).astype(np.float32)
_Q25 = ((_TAPS[0, :_TAPS_HALF] - _TAPS[0, : _TAPS_HALF - 1 : -1]) / 2).astype(np.float32)
HISTORY = _TAPS_HALF - 1  # samples the interpolator needs before a point
FUTURE = _TAPS_HALF  # and after it


def oversampled_extremes(buf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Highest and lowest of each sample buf[7 + k] (k < n) and the three 4x points after it.

    BUF (float32) holds HISTORY samples before the n samples and FUTURE samples after them.
    """
    width = 2 * _TAPS_HALF - 1
    sp = np.zeros(n, dtype=np.float32)
    dq = np.zeros(n, dtype=np.float32)
    mid = np.zeros(n, dtype=np.float32)
    pair = np.empty(n, dtype=np.float32)
    term = np.empty(n, dtype=np.float32)
    for m in range(_TAPS_HALF):
        a, b = buf[m : m + n], buf[width - m : width - m + n]
        np.add(a, b, out=pair)
        np.multiply(pair, _P25[m], out=term)
        sp += term
        np.multiply(pair, _C50[m], out=term)
        mid += term
        np.subtract(a, b, out=pair)
        np.multiply(pair, _Q25[m], out=term)
        dq += term
    x = buf[HISTORY : HISTORY + n]
    hi = np.maximum(x, mid)
    lo = np.minimum(x, mid)
    np.add(sp, dq, out=term)  # the point at +0.25
    np.maximum(hi, term, out=hi)
    np.minimum(lo, term, out=lo)
    np.subtract(sp, dq, out=term)  # the point at +0.75
    np.maximum(hi, term, out=hi)
    np.minimum(lo, term, out=lo)
    return hi, lo


def true_peak_envelope(x: np.ndarray, history: np.ndarray, future: int = _TAPS_HALF) -> np.ndarray:
    """Peak magnitude (4x oversampled) at and just after each sample of x[:-future], given the
    samples before x in HISTORY (its last 7 are used)."""
    n_out = len(x) - future
    if n_out <= 0:
        return np.empty(0)
    hist = np.asarray(history, dtype=np.float32)[len(history) - HISTORY :]
    buf = np.concatenate((hist, np.asarray(x, dtype=np.float32)))
    if future < FUTURE:
        buf = np.concatenate((buf, np.zeros(FUTURE - future, dtype=np.float32)))
    hi, lo = oversampled_extremes(buf, n_out)
    return np.maximum(hi, -lo).astype(np.float64)


class BlockPeaks:
    """Streams the 4x-oversampled peak of every block (e.g. 1 ms) of a signal fed in whole units.

    Output lags one feed behind (the interpolator needs the next samples); flush() ends the signal
    with silence.
    """

    def __init__(self, block_lengths: np.ndarray) -> None:
        self.pattern = np.asarray(block_lengths, dtype=np.int64)  # samples per block within one unit
        self.ulen = int(self.pattern.sum())
        self._uniform = bool((self.pattern == self.pattern[0]).all())
        self._edges = np.cumsum(self.pattern) - self.pattern
        self._hist = np.zeros(HISTORY, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Add whole units of samples; return (units x blocks) peaks of the units fed before."""
        x = np.asarray(x, dtype=np.float32)
        out = self._peaks(x[:FUTURE])
        self._pending = x
        return out

    def flush(self) -> np.ndarray:
        """Peaks of the last units fed."""
        out = self._peaks(np.zeros(0, dtype=np.float32))
        self._pending = np.zeros(0, dtype=np.float32)
        return out

    def _peaks(self, future: np.ndarray) -> np.ndarray:
        n = len(self._pending)
        if n == 0:
            return np.zeros((0, len(self.pattern)), dtype=np.float32)
        if len(future) < FUTURE:
            future = np.concatenate((future, np.zeros(FUTURE - len(future), dtype=np.float32)))
        buf = np.concatenate((self._hist, self._pending, future))
        self._hist = buf[n : n + HISTORY].copy()
        hi, lo = oversampled_extremes(buf, n)
        units = n // self.ulen
        if self._uniform:  # 1-D reduceat is several times faster than max(axis=1) on short rows
            starts = np.arange(0, n, int(self.pattern[0]))
            top = np.maximum.reduceat(hi, starts)
            np.maximum(top, -np.minimum.reduceat(lo, starts), out=top)
            return top.reshape(units, len(self.pattern))
        top = np.maximum.reduceat(hi.reshape(units, self.ulen), self._edges, axis=1)
        return np.maximum(top, -np.minimum.reduceat(lo.reshape(units, self.ulen), self._edges, axis=1))


def sliding_min(values: np.ndarray, width: int) -> np.ndarray:
    """out[i] = min(values[i : i + width]) for every full window."""
    n = len(values)
    if n < width:
        return np.empty(0)
    count = n - width + 1
    if width <= 16:  # the limiter's few-block windows: width - 1 vectorized minimums
        out = values[:count].copy()
        for k in range(1, width):
            np.minimum(out, values[k : k + count], out=out)
        return out
    # van Herk / Gil-Werman, O(n) whatever the width
    pad = (-n) % width
    v = np.concatenate((values, np.full(pad, np.inf))) if pad else values
    blocks = v.reshape(-1, width)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:count], prefix[width - 1 : width - 1 + count])


class GainComputer:
    """Turns a stream of required gains (dB) into a smooth gain curve that never exceeds them.

    gain[i] is the moving average, over WIDTH steps, of a held (WIDTH steps) and release-limited
    minimum of the required gains; every step of the average covers step i, so gain[i] is never above
    what step i needs. Output lags input by WIDTH - 1 steps; flush() releases the rest.
    """

    def __init__(self, width: int, release_per_step: float) -> None:
        self.width = width
        self.release = release_per_step  # dB a gain may rise per step
        self._t_hist = np.zeros(width - 1)  # required gains of the last width-1 steps
        self._r_last = 0.0  # release-limited gain of the last step (dB)
        self._g_pending = np.empty(0)  # linear gains not yet averaged
        self.max_reduction_db = 0.0  # deepest reduction so far (a positive number)

    def feed(self, need_db: np.ndarray) -> np.ndarray:
        """Add required gains; return the smoothed linear gains now complete."""
        n = len(need_db)
        if n:
            t_ext = np.concatenate((self._t_hist, need_db))
            held = sliding_min(t_ext, self.width)  # held[i] = min over the width steps ending at i
            self._t_hist = t_ext[len(t_ext) - (self.width - 1) :]
            steps = np.arange(n, dtype=np.float64) * self.release
            r = np.minimum.accumulate(held - steps) + steps
            r = np.minimum(r, self._r_last + steps + self.release)
            np.minimum(r, 0.0, out=r)
            self._r_last = float(r[-1])
            self.max_reduction_db = max(self.max_reduction_db, -float(r.min()))
            g = np.concatenate((self._g_pending, np.exp(r * _DB_TO_NEPER)))
        else:
            g = self._g_pending
        ready = len(g) - self.width + 1
        if ready <= 0:
            self._g_pending = g
            return np.empty(0)
        csum = np.concatenate(([0.0], np.cumsum(g)))
        smooth = np.minimum((csum[self.width : self.width + ready] - csum[:ready]) / self.width, 1.0)
        self._g_pending = g[ready:]
        return smooth

    def flush(self) -> np.ndarray:
        """The gains of the last WIDTH - 1 steps (the input is over: nothing more to limit)."""
        return self.feed(np.zeros(self.width - 1))


LOOKAHEAD_MS = 5.0  # the limiter's look-ahead


def lookahead_blocks(block_s: float, lookahead_ms: float = LOOKAHEAD_MS) -> int:
    """The GainComputer width (in blocks of BLOCK_S seconds) for a look-ahead of LOOKAHEAD_MS."""
    return max(2, round(lookahead_ms / 1000 / block_s))


def cover_previous(need: np.ndarray, last: float) -> tuple[np.ndarray, float]:
    """Each block's need also covering the block before it (LAST: the need of the block before NEED[0]).

    Returns the covered needs and the LAST to pass with the next call.
    """
    if not len(need):
        return need, last
    return np.minimum(need, np.concatenate(([last], need[:-1]))), float(need[-1])


class BlockLimiter:
    """Look-ahead true-peak limiter driven by per-block peak summaries from the analysis pass.

    Gains are computed once per block (1 ms) by a GainComputer from what each block needs
    (a block's need also covers the block before it) and interpolated linearly inside the block,
    so every sample's gain stays under what its block needs and the curve has no steps.
    """

    def __init__(
        self,
        block_lengths: np.ndarray,
        ceiling_db: float,
        *,
        sample_rate: int,
        lookahead_ms: float = LOOKAHEAD_MS,
        release_db_s: float = 80.0,
    ) -> None:
        self.pattern = np.asarray(block_lengths, dtype=np.int64)  # samples per block within one unit
        self.ceiling_db = ceiling_db
        block_s = float(self.pattern.mean()) / sample_rate
        self._gains = GainComputer(lookahead_blocks(block_s, lookahead_ms), release_db_s * block_s)
        self._last_need = 0.0
        self._g_ready = np.empty(0)  # block gains not yet applied (the first pairs with _x_wait[0])
        self._x_wait = np.empty(0, dtype=np.float32)  # samples of whole blocks not yet emitted
        self._block_pos = 0  # index within the unit pattern of the first waiting block
        # equal blocks (any rate divisible by 1000 Hz): the in-block ramp is one broadcast
        self._ramp = None
        if (self.pattern == self.pattern[0]).all():
            self._ramp = np.arange(self.pattern[0], dtype=np.float64) / self.pattern[0]

    @property
    def max_reduction_db(self) -> float:
        """Deepest gain reduction so far (a positive number of dB)."""
        return self._gains.max_reduction_db

    def process(self, x: np.ndarray, block_peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed whole units of samples X with their block peaks (units x blocks, linear, gain applied).

        Returns the limited samples now complete and their gains, in X's precision (float32 unless
        X is float64).
        """
        peaks = np.asarray(block_peaks).ravel()
        with np.errstate(divide="ignore"):
            need = np.minimum(0.0, self.ceiling_db - 20 * np.log10(np.maximum(peaks, 1e-12), dtype=np.float64))
        both, self._last_need = cover_previous(need, self._last_need)
        self._g_ready = np.concatenate((self._g_ready, self._gains.feed(both)))
        x = np.asarray(x)
        if x.dtype != np.float64:
            x = x.astype(np.float32, copy=False)
        self._x_wait = np.concatenate((self._x_wait, x)) if len(self._x_wait) else x
        return self._emit(len(self._g_ready) - 1)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """Apply the gains of the last blocks (the signal ends in silence)."""
        self._g_ready = np.concatenate((self._g_ready, self._gains.flush()))
        if len(self._g_ready):
            self._g_ready = np.concatenate((self._g_ready, self._g_ready[-1:]))
        return self._emit(len(self._g_ready) - 1)

    def _emit(self, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        dtype = self._x_wait.dtype
        if blocks <= 0:
            return np.empty(0, dtype=dtype), np.empty(0, dtype=dtype)
        start = self._g_ready[:blocks].astype(dtype)
        step = (self._g_ready[1 : blocks + 1] - self._g_ready[:blocks]).astype(dtype)
        if self._ramp is not None:
            lengths_total = blocks * len(self._ramp)
            total = min(lengths_total, len(self._x_wait))
            gain = (start[:, None] + step[:, None] * self._ramp.astype(dtype)).ravel()[:total]
        else:
            idx = (self._block_pos + np.arange(blocks)) % len(self.pattern)
            lengths = self.pattern[idx]
            total = min(int(lengths.sum()), len(self._x_wait))
            offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)[:total]
            frac = (offsets / np.repeat(lengths, lengths)[:total]).astype(dtype)
            gain = np.repeat(start, lengths)[:total] + np.repeat(step, lengths)[:total] * frac
        out = self._x_wait[:total] * gain
        self._x_wait = self._x_wait[total:]
        self._g_ready = self._g_ready[blocks:]
        self._block_pos = (self._block_pos + blocks) % len(self.pattern)
        return out, gain
