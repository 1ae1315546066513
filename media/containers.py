"""Container-level truncation checks that decoders do not report (a WAV or Ogg cut short)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def wav_truncated(path: Path) -> bool:
    """True when a WAV's data chunk promises more bytes than the file holds."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF":
            return False  # RF64 and odd variants: leave it to the decoder
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return True
            cid, clen = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                # 0 and 0xFFFFFFFF mean "unknown length" (a recorder streaming the file)
                return clen not in (0, 0xFFFFFFFF) and pos + 8 + clen > size
            pos += 8 + clen + (clen & 1)
    return True  # no data chunk at all


def ogg_truncated(path: Path) -> bool:
    """True when an Ogg file's last page is incomplete or is not marked end-of-stream."""
    size = path.stat().st_size
    with path.open("rb") as f:
        start = max(0, size - _OGG_MAX_PAGE - 27)
        f.seek(start)
        tail = f.read()
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:]
        if len(page) >= 27 and page[4] == 0:  # stream structure version 0: a real page header
            nseg = page[26]
            if len(page) < 27 + nseg:
                return True
            body = sum(page[27 : 27 + nseg])
            if len(page) < 27 + nseg + body:
                return True
            return not page[5] & 0x04
        at = tail.rfind(b"OggS", 0, at)
    return True


def is_truncated(path: Path, fmt: str) -> bool:
    """Container-level truncation check for formats whose decoders stay silent about it."""
    if not os.path.getsize(path):
        return True
    if fmt == "wav":
        return wav_truncated(path)
    if fmt == "ogg":
        return ogg_truncated(path)
    return False
