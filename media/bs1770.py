"""ITU-R BS.1770 arithmetic on 10 ms unit energies: K-weighting coefficients and gated loudness."""

from __future__ import annotations

import math

import numpy as np

UNITS_PER_BLOCK = 40  # 400 ms gating block
UNITS_PER_STEP = 10  # 75 % overlap: a new block every 100 ms
ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0


def unit_len(sample_rate: int) -> int:
    """Samples in one 10 ms analysis unit."""
    return sample_rate // 100


def k_weighting(fs: int) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """The two K-weighting biquads (shelf, then RLB high-pass) for sample rate FS, as (b, a)."""
    f0 = 1681.974450955533
    gain_db = 3.999843853973347
    q = 0.7071752369554196
    k = math.tan(math.pi * f0 / fs)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0)
    shelf_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    f0 = 38.13547087602444
    q = 0.5003270373238773
    k = math.tan(math.pi * f0 / fs)
    a0 = 1 + k / q + k * k
    hp_b = (1.0, -2.0, 1.0)
    hp_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def kweight_filter(fs: int) -> str:
    """An ffmpeg filter chain applying K-weighting at sample rate FS."""
    parts = []
    for b, a in k_weighting(fs):
        parts.append(
            "biquad="
            + ":".join(
                f"{name}={value:.12g}"
                for name, value in zip(("b0", "b1", "b2", "a0", "a1", "a2"), (*b, *a), strict=True)
            )
        )
    return ",".join(parts)


def block_loudness(unit_energy: np.ndarray, ulen: int) -> np.ndarray:
    """Loudness (LUFS) of every 400 ms block stepped by 100 ms, from per-unit sums of squares."""
    n = len(unit_energy)
    if n < UNITS_PER_BLOCK:
        return np.empty(0)
    csum = np.concatenate(([0.0], np.cumsum(unit_energy, dtype=np.float64)))
    starts = np.arange(0, n - UNITS_PER_BLOCK + 1, UNITS_PER_STEP)
    mean_sq = (csum[starts + UNITS_PER_BLOCK] - csum[starts]) / (UNITS_PER_BLOCK * ulen)
    with np.errstate(divide="ignore"):
        return -0.691 + 10 * np.log10(mean_sq)


def gated_loudness(unit_energy: np.ndarray, ulen: int) -> float:
    """BS.1770-4 integrated loudness (LUFS) from per-unit sums of K-weighted squares; -inf if silent."""
    blocks = block_loudness(unit_energy, ulen)
    if blocks.size == 0:
        return -math.inf
    z = 10 ** ((blocks + 0.691) / 10)
    above = blocks > ABSOLUTE_GATE
    if not above.any():
        return -math.inf
    relative = -0.691 + 10 * math.log10(float(z[above].mean())) + RELATIVE_GATE
    gated = above & (blocks > relative)
    return -0.691 + 10 * math.log10(float(z[gated].mean()))


def max_momentary(unit_energy: np.ndarray, ulen: int) -> float:
    """Loudest 400 ms block in LUFS (-inf for silence or input under 400 ms)."""
    blocks = block_loudness(unit_energy, ulen)
    if blocks.size == 0:
        if len(unit_energy) == 0:
            return -math.inf
        mean_sq = float(np.sum(unit_energy)) / (len(unit_energy) * ulen)
        return -0.691 + 10 * math.log10(mean_sq) if mean_sq > 0 else -math.inf
    return float(blocks.max())


def loudness_or_momentary(unit_energy: np.ndarray, ulen: int) -> float:
    """Gated loudness, or for input too short or quiet to gate (under one 400 ms block) the loudest momentary."""
    value = gated_loudness(unit_energy, ulen)
    return value if math.isfinite(value) else max_momentary(unit_energy, ulen)
