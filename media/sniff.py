"""Audio format detection from the first bytes of a file (never from its name)."""

from __future__ import annotations

# Bytes of a file's head that detect_format needs (an ID3v2 tag may push the real header further).
SNIFF_BYTES = 64 * 1024

# detected format -> (ffmpeg demuxer forced when decoding, MIME type of the source)
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("wav", "audio/wav"),
    "mp3": ("mp3", "audio/mpeg"),
    "aac": ("aac", "audio/aac"),
    "m4a": ("mov", "audio/mp4"),
    "3gp": ("mov", "audio/3gpp"),
    "ogg": ("ogg", "audio/ogg"),
    "webm": ("matroska", "audio/webm"),
    "flac": ("flac", "audio/flac"),
    "amr": ("amr", "audio/amr"),
}


def _skip_id3(head: bytes) -> int:
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def _mpeg_frame(head: bytes, at: int) -> str | None:
    """Classify an MPEG audio / ADTS sync word at offset AT."""
    if len(head) < at + 4 or head[at] != 0xFF or (head[at + 1] & 0xE0) != 0xE0:
        return None
    if (head[at + 1] >> 3) & 0x3 == 1:  # reserved MPEG version
        return None
    layer = (head[at + 1] >> 1) & 0x3
    if head[at + 1] & 0xF6 == 0xF0:  # ADTS: 12-bit sync, layer bits 00
        return "aac"
    if layer == 0:
        return None
    bitrate_index = head[at + 2] >> 4
    rate_index = (head[at + 2] >> 2) & 0x3
    if bitrate_index in (0, 15) or rate_index == 3:
        return None
    return "mp3"


def detect_format(head: bytes) -> str | None:
    """Return the audio format of a file starting with HEAD ("wav", "mp3", ...), or None if not audio."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return "amr"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        return "3gp" if brand.startswith((b"3gp", b"3g2")) else "m4a"
    start = _skip_id3(head)
    if start:
        if start >= len(head):
            return "mp3"  # a huge tag: the frames follow beyond what we read; ffmpeg will judge
        rest = head[start:]
        if rest.startswith(b"fLaC"):
            return "flac"
        return _mpeg_frame(head, start) or ("mp3" if len(rest) < 4 else None)
    kind = _mpeg_frame(head, 0)
    if kind is None:
        return None
    # A lone 0xFFFx pair occurs in random bytes; a real stream has a second frame soon after.
    return kind if _confirm_second_frame(head, kind) else None


def _confirm_second_frame(head: bytes, kind: str) -> bool:
    if len(head) < 4096:
        return True  # too little to look further; decoding decides
    window = head[1:4096]
    return any(window[i] == 255 and _mpeg_frame(window, i) == kind for i in range(len(window) - 4))
