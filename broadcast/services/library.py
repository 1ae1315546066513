"""The clip library (titles, tags, retirement) and playlists: ordered series of clips for schedules."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import Clip, Playlist, User, utcnow
from broadcast.services import audit, clips
from schedules.policy import PLAYLIST_MODES

logger = logging.getLogger(__name__)
MAX_ITEMS = 500
MAX_TAGS = 20


def _writer(user: User) -> None:
    if user.role == "viewer":
        raise forbidden("只读用户不能修改节目库。", "A viewer cannot change the library.")


def _title(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise BroadcastError("invalid_title", "标题不能为空，最长 200 字。", "A title of 1-200 characters is required.")
    return value.strip()


def create_playlist(
    session: Session, user: User, title: object, clip_ids: object, mode: object, *, address: str | None = None
) -> Playlist:
    """An ordered list of clips the user may use; `advance` plays each once in order, `rotate` loops."""
    _writer(user)
    mode = mode or "advance"
    if mode not in PLAYLIST_MODES:
        raise BroadcastError(
            "invalid_playlist_mode", "播放方式只能是 advance（顺序）或 rotate（循环）。", "mode: advance or rotate."
        )
    if not isinstance(clip_ids, list) or not clip_ids or len(clip_ids) > MAX_ITEMS:
        raise BroadcastError(
            "invalid_clip_ids", f"节目单需要 1-{MAX_ITEMS} 个音频。", f"A playlist needs 1-{MAX_ITEMS} clips."
        )
    ids = [clips.get(session, c, user).id for c in clip_ids]
    item = Playlist(title=_title(title), mode=str(mode), clip_ids=ids, created_by=user.id)
    session.add(item)
    session.flush()
    audit.record(session, user.username, "playlist.create", object_type="playlist", object_id=item.id, address=address)
    return item


def playlists_for(session: Session, user: User) -> list[Playlist]:
    """Playlists whose every clip the user may use."""
    usable = []
    for item in session.scalars(select(Playlist).order_by(Playlist.id.desc())):
        try:
            for clip_id in item.clip_ids:
                clips.get(session, clip_id, user)
        except BroadcastError:
            continue
        usable.append(item)
    return usable


def playlist_json(item: Playlist) -> dict[str, Any]:
    """A playlist as the API shows it."""
    return {"id": item.id, "title": item.title, "mode": item.mode, "clip_ids": list(item.clip_ids)}


def clips_for(
    session: Session, user: User, *, tag: str | None = None, query: str | None = None, retired: bool = False
) -> list[Clip]:
    """Clips the user may use, newest first, filtered by tag and title words."""
    rows = session.scalars(select(Clip).order_by(Clip.id.desc()).limit(2000))
    found = []
    for clip in rows:
        if (clip.retired_at is not None) != retired:
            continue
        if tag and tag not in (clip.tags or []):
            continue
        if query and query not in (clip.title or ""):
            continue
        if clips._usable(session, clip, user):
            found.append(clip)
    return found


def clip_entry(clip: Clip) -> dict[str, Any]:
    """A clip as the library lists it."""
    return {
        "id": clip.id,
        "title": clip.title,
        "tags": clip.tags or [],
        "duration_ms": clip.duration_ms,
        "sha256": clip.sha256,
        "source": clip.source,
        "retired": clip.retired_at is not None,
        "created_at": clip.created_at.isoformat(),
    }


def edit_clip(
    session: Session, user: User, clip_id: object, data: dict[str, Any], *, address: str | None = None
) -> Clip:
    """Rename, tag or retire (or bring back) a clip the user may use."""
    _writer(user)
    clip = clips.get(session, clip_id, user)
    unknown = sorted(set(data) - {"title", "tags", "retired"})
    if unknown or not data:
        raise BroadcastError(
            "invalid_fields",
            f"无法修改的字段：{'、'.join(unknown) or '（空）'}",
            f"Fields that cannot be changed: {', '.join(unknown) or '(none given)'}",
        )
    if "tags" in data:
        tags = data["tags"]
        if (
            not isinstance(tags, list)
            or len(tags) > MAX_TAGS
            or not all(isinstance(t, str) and 0 < len(t) <= 32 for t in tags)
        ):
            raise BroadcastError(
                "invalid_tags",
                f"标签最多 {MAX_TAGS} 个，每个 1-32 字。",
                f"At most {MAX_TAGS} tags of 1-32 characters.",
            )
        clip.tags = list(dict.fromkeys(t.strip() for t in tags))
    if "title" in data:
        clip.title = _title(data["title"])
    if "retired" in data:
        if not isinstance(data["retired"], bool):
            raise BroadcastError("invalid_retired", "retired 必须是 true 或 false。", "retired must be true or false.")
        clip.retired_at = utcnow() if data["retired"] else None
    audit.record(
        session,
        user.username,
        "clip.edit",
        object_type="clip",
        object_id=clip.id,
        address=address,
        changed=sorted(data),
    )
    return clip
