"""JSON views of models, shared by the API and the console."""

from __future__ import annotations

from typing import Any

from flask import url_for

from broadcast.models import Clip, Region, Speaker


def clip_json(clip: Clip) -> dict[str, Any]:
    """A clip as the API shows it."""
    return {
        "id": clip.id,
        "sha256": clip.sha256,
        "format": clip.format,
        "duration_ms": clip.duration_ms,
        "loudness_lufs": clip.loudness_lufs,
        "true_peak_dbtp": clip.true_peak_dbtp,
        "loudness_range_lu": clip.loudness_range_lu,
        "source": clip.source,
        "source_format": clip.source_format,
        "engine": clip.engine,
        "voice": clip.voice,
        "title": clip.title,
        "text": clip.text,
        "spoken_text": clip.spoken_text,
        "waveform": clip.waveform or [],
        "warnings": clip.warnings or [],
        "url": url_for("media", name=f"{clip.sha256}.{clip.format}"),
    }


def region_json(region: Region) -> dict[str, Any]:
    """A region as the API shows it."""
    return {"code": region.code, "name": region.name, "level": region.level, "parent_code": region.parent_code}


def speaker_json(speaker: Speaker) -> dict[str, Any]:
    """A speaker as the API shows it, with its health."""
    return {
        "id": speaker.id,
        "name": speaker.name,
        "region_code": speaker.grid_code,
        "online": speaker.online,
        "last_seen": speaker.last_seen.isoformat() if speaker.last_seen else None,
        "volume": speaker.volume,
        "agent_version": speaker.agent_version,
        "playing": speaker.playing_broadcast_id,
        "clock_offset_ms": speaker.clock_offset_ms,
        "cache_bytes": speaker.cache_bytes,
        "rejected_count": speaker.rejected_count,
        "schedule_synced_at": speaker.schedule_synced_at.isoformat() if speaker.schedule_synced_at else None,
        "latitude": speaker.latitude,
        "longitude": speaker.longitude,
    }
