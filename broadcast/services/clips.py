"""Clips: text or recordings in, normalized audio stored once by content hash."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import Clip, Region, User
from broadcast.services import audit, regions
from media import ClipInfo, MediaConfig, MediaStore, Wrap, ingest_upload, synthesize_text, tts_key

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 200  # the column, and what a play command may carry
ID_MAX = 2**31 - 1  # the largest id a database integer column holds
# Control characters (but tab and newline) and ANSI escape sequences are never spoken: "\x1b[31m" is not 三十一米.
CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
CONTROL_REMOVED = "text.control_removed"
VOICE_FALLBACK = "tts.voice_fallback"  # the chosen (or default) voice failed; another engine spoke


def strip_control(text: str) -> tuple[str, bool]:
    """The text without control characters and terminal escape sequences, and whether any were removed."""
    cleaned = CONTROL.sub("", text.replace("\r\n", "\n"))
    return cleaned, cleaned != text


def _may_create(user: User | None) -> None:
    if user is not None and user.role == "viewer":
        raise forbidden("只读用户不能制作音频。", "A viewer cannot make clips.")


def _check_title(title: str | None) -> None:
    if title is not None and len(title) > TITLE_MAX_CHARS:
        raise BroadcastError(
            "title_too_long",
            f"标题最多 {TITLE_MAX_CHARS} 个字（现为 {len(title)} 个）。",
            f"A title has at most {TITLE_MAX_CHARS} characters (this one has {len(title)}).",
            kind="bad_request",
        )


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
    _may_create(user)
    _check_title(title)
    text, stripped = strip_control(text)
    if stripped:
        logger.warning("control characters removed from a notice's text before speaking it")
    key = tts_key(text, voice, rate, wrap, config)
    existing = session.scalar(select(Clip).where(Clip.tts_key == key))
    if existing is not None and store.exists(existing.sha256):
        if title and title != existing.title:  # the same audio under the name this user gave it
            return _retitled(session, existing, title, user)
        return existing
    info = synthesize_text(text, store, config, voice=voice, rate=rate, wrap=wrap)
    if existing is not None:  # the row outlived its file: refill the row from the new synthesis
        session.delete(existing)
        session.flush()
    substituted = fell_back(info, voice)
    if substituted:  # not kept under the key: the same words next time try the chosen voice again
        logger.warning("TTS voice %s unavailable; %s:%s spoke instead", voice or "(default)", info.engine, info.voice)
    clip = _row(info, user=user, title=title or short_title(text), text=text, key=None if substituted else key)
    extra = [CONTROL_REMOVED] if stripped else []
    if substituted:
        extra.append(VOICE_FALLBACK)
    if extra:
        clip.warnings = [*(clip.warnings or []), *extra]
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


_COPIED = ("sha256", "format", "mime", "size_bytes", "duration_ms", "loudness_lufs", "true_peak_dbtp",
           "loudness_range_lu", "source", "source_format", "engine", "voice", "text", "spoken_text", "waveform",
           "warnings")  # fmt: skip


def _retitled(session: Session, clip: Clip, title: str, user: User | None) -> Clip:
    """A new row for a stored clip's audio with another title (the file is shared, not synthesized again)."""
    copy = Clip(**{name: getattr(clip, name) for name in _COPIED}, title=title, created_by=user.id if user else None)
    session.add(copy)
    session.flush()
    audit.record(
        session, user.username if user else "system", "clip.create", object_type="clip", object_id=copy.id,
        source=clip.source, sha256=clip.sha256, copy_of=clip.id,
    )  # fmt: skip
    return copy


def short_title(text: str, limit: int = 40) -> str:
    """A notice's first words as its title, with an ellipsis when it goes on."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def fell_back(info: ClipInfo, voice: str | None) -> bool:
    """True when the voice that spoke is not the one asked for (or, with none asked, an engine failed first)."""
    if voice:
        return voice not in (info.voice, f"{info.engine}:{info.voice}")
    return any(attempt.get("reason") != "not enabled" for attempt in info.tts_attempts)


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
    """Normalize an uploaded or recorded file and keep it as a clip (untitled: "上传录音 #id")."""
    _may_create(user)
    _check_title(title)
    info = ingest_upload(stream, store, config, wrap=wrap)
    clip = _row(info, user=user, title=title, text=None, key=None)
    clip.source = source
    session.add(clip)
    session.flush()
    if not clip.title:  # 播发记录 never shows an empty 内容
        clip.title = f"{'现场录音' if source == 'recording' else '上传录音'} #{clip.id}"
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

    Admins use any clip; others their own, county-wide ones (made by an admin or the system) and, when they
    are bound to a region, those made by users inside it.
    """
    text = str(clip_id)
    ident = int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0
    clip = session.get(Clip, ident) if 0 < ident <= ID_MAX else None
    if clip is None or not _usable(session, clip, user):
        raise not_found("音频", "Clip", text[:40])
    return clip


def usable_file(session: Session, sha256: str, user: User) -> bool:
    """True when the user may fetch this stored file: it belongs to a clip they may use (as GET /clips/<id>)."""
    tree: dict[str, Region] | None = None
    for clip in session.scalars(select(Clip).where(Clip.sha256 == sha256).order_by(Clip.id)):
        if _usable(session, clip, user, tree):
            return True
        tree = tree or regions.load_tree(session)
    return False


def _usable(session: Session, clip: Clip, user: User, tree: dict[str, Region] | None = None) -> bool:
    if user.role == "admin" or clip.created_by is None or clip.created_by == user.id:
        return True
    author = session.get(User, clip.created_by)
    if author is None or author.role == "admin":
        return True
    scope = user.region_code  # a user without a region (a county viewer) sees only county-wide clips
    if scope is None or author.region_code is None:
        return False
    return regions.within(tree or regions.load_tree(session), author.region_code, scope)
