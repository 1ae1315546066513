"""The attention tone: one clip per media settings, and the keep list every schedule snapshot carries.

Every speaker holds the tone before any alert (the snapshot's `keep` list), so an alert's tone command
carries only the tone's hash and URL: 10,000 speakers do not each receive its bytes through the broker,
and the tone sounds with the media server down.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast import media_urls
from broadcast.models import Clip
from media import PIPELINE_VERSION, MediaError, attention_tone

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
KEEP_URL_TTL_S = 3 * 24 * 3600  # outlives a snapshot (26 h): a speaker retrying a fetch still holds a valid URL


def _key(platform: Platform) -> str:
    config = platform.media
    return hashlib.sha256(
        f"attention-tone|{PIPELINE_VERSION}|{config.attention_tone_s}|{config.tone_level_lu}|"
        f"{config.target_lufs}|{config.output_format}|{config.bitrate_kbps}|{config.sample_rate}".encode()
    ).hexdigest()


def tone_clip(session: Session, platform: Platform) -> Clip:
    """The attention tone as a clip, made once per media settings (same bytes, so speakers keep it cached).

    Raises:
        MediaError: when the tone cannot be rendered.
    """
    key = _key(platform)
    existing = session.scalar(select(Clip).where(Clip.tts_key == key))
    if existing is not None and platform.media_store.exists(existing.sha256):
        return existing
    info = attention_tone(platform.media_store, platform.media)
    if existing is not None:
        return existing  # the file is back in the store: same settings, same bytes
    clip = Clip(
        sha256=info.sha256,
        format=info.format,
        mime=info.mime,
        size_bytes=info.size_bytes,
        duration_ms=info.duration_ms,
        loudness_lufs=info.loudness_lufs,
        true_peak_dbtp=info.true_peak_dbtp,
        loudness_range_lu=info.loudness_range_lu,
        source="generated",
        title="预警提示音",
        tts_key=key,
        waveform=info.waveform,
    )
    session.add(clip)
    session.flush()
    return clip


def keep_list(session: Session, platform: Platform, *, now: float | None = None) -> list[dict[str, Any]]:
    """What every snapshot's `keep` carries: the attention tone ({sha256, media_url, duration_ms}).

    The tone is rendered here the first time (once per media settings); when it cannot be, the snapshot goes
    out without it and the speakers fetch the tone by URL at the first alert, as before.
    """
    now = time.time() if now is None else now
    try:
        clip = tone_clip(session, platform)
    except MediaError as error:
        logger.warning("attention tone not available for snapshots: %s", error)
        return []
    ttl = max(int(platform.settings["MEDIA_URL_TTL_S"]), KEEP_URL_TTL_S)
    path = media_urls.signed_path(platform.settings["SECRET_KEY"], clip.sha256, clip.format, ttl, now=now)
    url = platform.public_url.rstrip("/") + path
    return [{"sha256": clip.sha256, "media_url": url, "duration_ms": clip.duration_ms}]
