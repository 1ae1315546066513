"""Building blocks measured directly: format sniffing, the limiter, BS.1770 gating."""

from __future__ import annotations

import numpy as np
import pytest

from media.analyze import block_edges, block_lengths
from media.bs1770 import gated_loudness
from media.limiter import BlockLimiter, BlockPeaks, sliding_min, true_peak_envelope
from media.sniff import detect_format


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(100), "mp3"),
        (b"\xff\xfb\x90\x64" + bytes(100), "mp3"),
        (b"\xff\xf1\x50\x80" + bytes(100), "aac"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "m4a"),
        (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00", "3gp"),
        (b"OggS\x00\x02" + bytes(30), "ogg"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "webm"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"#!AMR\n<\x91", "amr"),
        (b"#!AMR-WB\n", "amr"),
        (b"hello world, this is text", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, fmt: str | None) -> None:
    assert detect_format(head) == fmt


def test_sniff_rejects_a_lone_sync_word_in_noise() -> None:
    noise = bytearray(np.random.default_rng(0).integers(0, 255, 8192, dtype=np.uint8))
    noise = bytes(b for b in noise if b != 0xFF)
    assert detect_format(b"\xff\xfb\x90\x64" + noise * 2) is None


def test_limiter_keeps_true_peak_and_length() -> None:
    sr, ulen = 24000, 240
    rng = np.random.default_rng(2)
    t = np.arange(sr * 5) / sr
    x = np.sin(2 * np.pi * 300 * t) * (0.2 + 2.0 * (np.sin(2 * np.pi * 0.7 * t) > 0.9)) + rng.normal(0, 0.02, t.size)
    env = np.concatenate((true_peak_envelope(np.concatenate((x, np.zeros(8))), np.zeros(15)),))
    peaks = np.maximum.reduceat(env.reshape(-1, ulen), block_edges(ulen), axis=1)
    lim = BlockLimiter(block_lengths(ulen), -3.0, sample_rate=sr)
    outs, gains = [], []
    for u in range(0, len(peaks), 70):  # odd chunk sizes: state must carry across
        y, g = lim.process(x[u * ulen : (u + 70) * ulen], peaks[u : u + 70])
        outs.append(y)
        gains.append(g)
    y, g = lim.flush()
    y = np.concatenate([*outs, y])
    g = np.concatenate([*gains, g])
    assert y.size == x.size
    np.testing.assert_allclose(y, x * g)
    assert g.max() <= 1.0
    assert np.abs(np.diff(g)).max() < 0.01  # no steps: the gain glides
    peak = true_peak_envelope(np.concatenate((y, np.zeros(8))), np.zeros(15)).max()
    assert 20 * np.log10(peak) <= -3.0 + 0.05
    assert lim.max_reduction_db > 8  # it really limited the loud bursts
    quiet = np.abs(x) < 0.25
    assert np.median(g[quiet]) > 0.99  # and left the quiet parts alone


def test_gated_loudness_of_a_1khz_sine() -> None:
    # BS.1770: a 0 dBFS 997 Hz sine reads -3.01 LUFS; the K-weighting at 1 kHz adds ~+0.7 dB
    sr = 24000
    ulen = sr // 100
    x = np.sin(2 * np.pi * 997 * np.arange(sr * 3) / sr) * 0.1
    energy = (x.reshape(-1, ulen) ** 2).sum(axis=1) * 10 ** (0.69 / 10)
    assert abs(gated_loudness(energy, ulen) - (-23.0 - 0.69 + 0.69)) < 0.1
    assert gated_loudness(np.zeros(300), ulen) == -np.inf


def _bandlimited(n: int, seed: int) -> np.ndarray:
    """A periodic signal of N samples made of sines up to 0.45 fs (every value known exactly)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    x = np.zeros(n)
    for cycles in rng.integers(1, int(n * 0.45), 40):
        x += rng.uniform(0.02, 0.1) * np.cos(2 * np.pi * cycles * k / n + rng.uniform(0, 2 * np.pi))
    return x


def test_true_peak_envelope_finds_intersample_peaks() -> None:
    n = 4800
    x = _bandlimited(n, 3)
    # the exact 4x-oversampled signal: the spectrum zero-padded (x is periodic and band-limited)
    spectrum = np.fft.rfft(x)
    fine = np.fft.irfft(np.concatenate((spectrum, np.zeros(3 * n // 2))), 4 * n) * 4
    exact = np.abs(fine).reshape(n, 4).max(axis=1)
    wrapped = np.concatenate((x[-15:], x, x[:8]))  # periodic history and future
    env = true_peak_envelope(wrapped[15:], wrapped[:15])
    assert env.shape == (n,)
    assert np.abs(env - exact).max() < 0.01 * exact.max()
    assert env.max() > np.abs(x).max() * 1.01  # it really saw peaks between the samples


@pytest.mark.parametrize("ulen", [240, 441])  # 24 kHz (equal 1 ms blocks) and 44.1 kHz (unequal)
def test_block_peaks_stream_like_one_pass(ulen: int) -> None:
    units = 130
    x = _bandlimited(units * ulen, 5).astype(np.float32)
    env = true_peak_envelope(np.concatenate((x, np.zeros(8))), np.zeros(15))
    expected = np.maximum.reduceat(env.reshape(-1, ulen), block_edges(ulen), axis=1)
    meter = BlockPeaks(block_lengths(ulen))
    parts = [meter.feed(x[u * ulen : (u + step) * ulen]) for u, step in ((0, 1), (1, 70), (71, 2), (73, 57))]
    got = np.concatenate([*parts, meter.flush()])
    assert got.shape == (units, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("width", [2, 5, 16, 17, 40])
def test_sliding_min(width: int) -> None:
    values = np.random.default_rng(width).normal(size=300)
    expected = np.array([values[i : i + width].min() for i in range(len(values) - width + 1)])
    np.testing.assert_array_equal(sliding_min(values, width), expected)
    assert sliding_min(values[: width - 1], width).size == 0


def test_limiter_with_unequal_blocks_and_float32() -> None:
    sr, ulen = 44100, 441
    t = np.arange(sr * 2) / sr
    x = (np.sin(2 * np.pi * 440 * t) * np.where(t % 0.5 < 0.1, 1.5, 0.2)).astype(np.float32)
    env = true_peak_envelope(np.concatenate((x, np.zeros(8))), np.zeros(15))
    peaks = np.maximum.reduceat(env.reshape(-1, ulen), block_edges(ulen), axis=1)
    lim = BlockLimiter(block_lengths(ulen), -6.0, sample_rate=sr)
    ys, gs = [], []
    for u in range(0, len(peaks), 33):
        y, g = lim.process(x[u * ulen : (u + 33) * ulen], peaks[u : u + 33])
        ys.append(y)
        gs.append(g)
    y, g = lim.flush()
    y, g = np.concatenate([*ys, y]), np.concatenate([*gs, g])
    assert y.dtype == np.float32
    assert y.size == x.size
    np.testing.assert_allclose(y, x * g, rtol=1e-6)
    assert np.abs(np.diff(g)).max() < 0.01
    peak = true_peak_envelope(np.concatenate((y, np.zeros(8))), np.zeros(15)).max()
    assert 20 * np.log10(peak) <= -6.0 + 0.05
