"""Upload intake: spool a stream of unknown length under the size limit, sniff it, run pass 1."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import errors
from .analyze import Prepared, analyze
from .config import MediaConfig
from .containers import is_truncated
from .sniff import FORMATS, SNIFF_BYTES, detect_format

logger = logging.getLogger(__name__)

_BLOCK = 256 * 1024


def spool(src: BinaryIO, dest: Path, max_bytes: int) -> int:
    """Copy SRC to DEST block by block, stopping with too_large as soon as MAX_BYTES is passed."""
    total = 0
    with dest.open("wb") as out:
        while True:
            block = src.read(_BLOCK)
            if not block:
                break
            total += len(block)
            if total > max_bytes:
                raise errors.too_large(max_bytes)
            out.write(block)
    return total


def open_upload(src: BinaryIO | Path, work: Path, config: MediaConfig) -> tuple[Path, str]:
    """Bring an upload to a local file (streams are spooled) and detect its format by content."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        size = path.stat().st_size
        if size > config.max_upload_bytes:
            raise errors.too_large(config.max_upload_bytes)
    else:
        path = work / "upload.bin"
        size = spool(src, path, config.max_upload_bytes)
    if size == 0:
        raise errors.empty()
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    fmt = detect_format(head)
    if fmt is None:
        raise errors.not_audio("unrecognised content")
    if is_truncated(path, fmt):
        raise errors.corrupt(f"{fmt} container is truncated")
    return path, fmt


def analyze_upload(path: Path, fmt: str, work: Path, config: MediaConfig) -> Prepared:
    """Pass 1 on an upload, decoding with the demuxer its content calls for (never the name)."""
    demuxer = FORMATS[fmt][0]
    return analyze(["-f", demuxer, "-i", str(path)], work / "input.f32", config)


def analyze_samples(samples: np.ndarray, sample_rate: int, work: Path, name: str, config: MediaConfig) -> Prepared:
    """Pass 1 on a generated signal (tones, chimes)."""
    raw = work / f"{name}.in.f32"
    samples.astype("<f4").tofile(raw)
    return analyze(["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", str(raw)], work / f"{name}.f32", config)
