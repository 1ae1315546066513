"""Clips: text or recordings in, normalized audio stored once by content hash."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, not_found
from broadcast.models import Clip, User
from broadcast.services import audit, regions
from media import ClipInfo, MediaConfig, MediaStore, Wrap, ingest_upload, synthesize_text, tts_key


def _row(info: ClipInfo, *, user: User | None, title: str | None, text: str | None, key: str | None) -> Clip:
    return Clip(
        sha256=info.sha256,
        format=info.format,
        mime=info.mime,
        size_bytes=info.size_bytes,
        duration_ms=info.duration_ms,
        loudness_lufs=info.loudness_lufs,
        true_peak_dbtp=info.true_peak_dbtp,
        loudness_range_lu=info.loudness_range_lu,
        source=info.source,
        source_format=info.source_format,
        engine=info.engine,
        voice=info.voice,
        title=title,
        text=text,
        spoken_text=info.spoken_text,
        tts_key=key,
        waveform=info.waveform,
        warnings=info.warnings or None,
        created_by=user.id if user else None,
    )


def from_text(
    session: Session,
    store: MediaStore,
    config: MediaConfig,
    text: object,
    *,
    user: User | None,
    voice: str | None = None,
    rate: float = 1.0,
    wrap: Wrap | None = None,
    title: str | None = None,
) -> Clip:
    """Speak a notice; the same text, voice and options return the clip made before."""
    if not isinstance(text, str):
        raise BroadcastError("text_required", "请输入要播报的文字。", "Give the text to speak.")
    key = tts_key(text, voice, rate, wrap, config)
    existing = session.scalar(select(Clip).where(Clip.tts_key == key))
    if existing is not None and store.exists(existing.sha256):
        return existing
    info = synthesize_text(text, store, config, voice=voice, rate=rate, wrap=wrap)
    if existing is not None:  # the row outlived its file: refill the row from the new synthesis
        session.delete(existing)
        session.flush()
    clip = _row(info, user=user, title=title or text[:40], text=text, key=key)
    session.add(clip)
    try:
        session.flush()
    except IntegrityError:  # another worker made the same clip a moment ago
        session.rollback()
        return session.scalars(select(Clip).where(Clip.tts_key == key)).one()
    audit.record(
        session,
        user.username if user else "system",
        "clip.create",
        object_type="clip",
        object_id=clip.id,
        source="tts",
        engine=info.engine,
        sha256=info.sha256,
    )
    return clip


def from_upload(
    session: Session,
    store: MediaStore,
    config: MediaConfig,
    stream: BinaryIO | Path,
    *,
    user: User | None,
    title: str | None = None,
    source: str = "upload",
    wrap: Wrap | None = None,
) -> Clip:
    """Normalize an uploaded or recorded file and keep it as a clip."""
    info = ingest_upload(stream, store, config, wrap=wrap)
    clip = _row(info, user=user, title=title, text=None, key=None)
    clip.source = source
    session.add(clip)
    session.flush()
    audit.record(
        session,
        user.username if user else "system",
        "clip.create",
        object_type="clip",
        object_id=clip.id,
        source=source,
        source_format=info.source_format,
        sha256=info.sha256,
    )
    return clip


def get(session: Session, clip_id: object, user: User) -> Clip:
    """A clip the user may use, or a not-found error (an unreleased notice of another region stays unseen).

    Admins use any clip; others their own, those of users inside their region, and county-wide ones
    (made by an admin or the system).
    """
    try:
        ident = int(str(clip_id))
    except ValueError:
        raise not_found("音频", "Clip", clip_id) from None
    clip = session.get(Clip, ident)
    if clip is None or not _usable(session, clip, user):
        raise not_found("音频", "Clip", clip_id)
    return clip


def _usable(session: Session, clip: Clip, user: User) -> bool:
    scope = regions.user_scope(user)
    if scope is None or clip.created_by is None or clip.created_by == user.id:
        return True
    author = session.get(User, clip.created_by)
    if author is None or author.role == "admin":
        return True
    return author.region_code is not None and regions.within(regions.load_tree(session), author.region_code, scope)
