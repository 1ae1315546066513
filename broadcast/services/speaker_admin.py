"""Managing speakers: add, edit, move, disable, replace and retire, with the broker's accounts following."""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, bindparam, func, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden, not_found
from broadcast.models import Region, Speaker, User, utcnow
from broadcast.services import audit, provisioning, regions, speaker_moves
from broadcast.services.broadcasts import Caller
from broadcast.services.spreadsheets import refuse_formula

if TYPE_CHECKING:
    from broadcast.platform import Platform
    from speakers.config import AgentConfig

logger = logging.getLogger(__name__)

SPEAKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a topic segment and a broker user name
TRUE_WORDS = {"1", "true", "yes", "y", "on", "是", "真", "t"}
FALSE_WORDS = {"", "0", "false", "no", "n", "off", "否", "假", "f"}
TEXT_LIMITS = {"name": 100, "address": 200, "notes": 500, "sim_number": 32}
TEXT_ZH = {"name": "名称", "address": "地址", "notes": "备注", "sim_number": "物联网卡号"}
EDITABLE = ("name", "grid_code", "latitude", "longitude", "address", "notes", "sim_number", "test_speaker", "volume")
STATES = ("online", "offline", "never_seen", "disabled", "retired")


def _bad(code: str, column: str, zh: str, en: str) -> BroadcastError:
    return BroadcastError(code, zh, en, column=column)


def check_id(value: Any) -> str:
    """A speaker id: letters, digits, `_ . -`, at most 64 characters (it names the broker account and topic)."""
    text = str(value or "").strip()
    if not SPEAKER_ID.match(text):
        raise _bad(
            "invalid_speaker_id",
            "speaker_id",
            f"终端编号无效：{text!r}（字母、数字、_ . -，最长 64 位）",
            f"Invalid speaker id: {text!r} (letters, digits, _ . -; at most 64)",
        )
    return text


def check_text(column: str, value: Any, *, required: bool = False) -> str | None:
    """A free-text field trimmed and within its length; empty becomes None unless required."""
    text = str(value if value is not None else "").strip()
    limit = TEXT_LIMITS[column]
    zh = TEXT_ZH[column]
    if required and not text:
        raise _bad("required", column, f"{zh}不能为空。", f"{column} is required.")
    if len(text) > limit:
        raise _bad("too_long", column, f"{zh}不能超过 {limit} 个字。", f"{column} is at most {limit} characters.")
    return refuse_formula(text, column, zh) or None


def parse_flag(value: Any, column: str = "test_speaker") -> bool:
    """是/否, true/false, 1/0 (empty: false)."""
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise _bad("invalid_flag", column, f"{column} 只能填 是/否：{value!r}", f"{column} must be yes/no: {value!r}")


def parse_coordinate(value: Any, column: str) -> float | None:
    """Latitude (-90..90) or longitude (-180..180) in decimal degrees; empty is None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    limit = 90.0 if column == "latitude" else 180.0
    zh = "纬度" if column == "latitude" else "经度"
    try:
        number = float(str(value).strip()) if not isinstance(value, int | float) or isinstance(value, bool) else value
    except ValueError:
        number = None
    if number is None or isinstance(number, bool) or not -limit <= float(number) <= limit or number != number:
        raise _bad(
            "invalid_coordinate",
            column,
            f"{zh}无效：{value!r}（十进制度数，-{limit:g} 到 {limit:g}）",
            f"Invalid {column}: {value!r} (decimal degrees, -{limit:g} to {limit:g})",
        )
    return float(number)


def check_pair(latitude: float | None, longitude: float | None) -> None:
    """Coordinates come in pairs: both or neither."""
    if (latitude is None) != (longitude is None):
        column = "longitude" if longitude is None else "latitude"
        raise _bad("coordinate_pair", column, "纬度和经度要同时填写。", "Give both latitude and longitude, or neither.")


def check_grid(tree: dict[str, Region], code: Any, user: User | None) -> str:
    """A grid that exists and lies in the user's scope."""
    text = str(code or "").strip()
    region = tree.get(text)
    if region is None:
        raise _bad("unknown_grid", "grid_code", f"网格不存在：{text or '（空）'}", f"Unknown grid: {text or '(empty)'}")
    if region.level != "grid":
        raise _bad(
            "not_a_grid",
            "grid_code",
            f"{text} 不是网格，终端只能挂在网格下。",
            f"{text} is not a grid; speakers hang in grids.",
        )
    if user is not None and not may_edit(user, tree, text):
        raise BroadcastError(
            "forbidden",
            f"您无权管理该网格的终端：{text}",
            f"You may not manage speakers in {text}.",
            kind="forbidden",
            column="grid_code",
        )
    return text


def may_edit(user: User | None, tree: dict[str, Region], grid_code: str) -> bool:
    """Admins, and operators within their region, manage speakers (None: the command line)."""
    if user is None or user.role == "admin":
        return True
    return user.role == "operator" and regions.within(tree, grid_code, regions.user_scope(user))


def clean_fields(tree: dict[str, Region], data: dict[str, Any], user: User | None) -> dict[str, Any]:
    """Check every editable field present in `data`; return them typed (the first problem raises)."""
    out: dict[str, Any] = {}
    for column in ("name", "address", "notes", "sim_number"):
        if column in data:
            out[column] = check_text(column, data[column], required=column == "name")
    if "grid_code" in data:
        out["grid_code"] = check_grid(tree, data["grid_code"], user)
    for column in ("latitude", "longitude"):
        if column in data:
            out[column] = parse_coordinate(data[column], column)
    if "test_speaker" in data:
        out["test_speaker"] = parse_flag(data["test_speaker"])
    if "volume" in data:
        volume = data["volume"]
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise _bad("invalid_volume", "volume", "音量必须是 0-100 的整数。", "volume is an integer 0-100.")
        out["volume"] = volume
    return out


def _actor(user: User | None) -> str:
    return user.username if user is not None else "cli"


def get(session: Session, user: User | None, speaker_id: str) -> Speaker:
    """One speaker the user may see."""
    speaker = session.get(Speaker, speaker_id)
    if speaker is None:
        raise not_found("终端", "Speaker", speaker_id)
    if user is not None and not regions.within(regions.load_tree(session), speaker.grid_code, regions.user_scope(user)):
        raise not_found("终端", "Speaker", speaker_id)
    return speaker


def _editable(session: Session, user: User | None, speaker_id: str) -> tuple[Speaker, dict[str, Region]]:
    speaker = get(session, user, speaker_id)
    tree = regions.load_tree(session)
    if not may_edit(user, tree, speaker.grid_code):
        raise forbidden(f"您无权管理该终端：{speaker_id}", f"You may not manage speaker {speaker_id}.")
    if speaker.retired_at is not None:
        raise BroadcastError(
            "speaker_retired", f"终端已退役：{speaker_id}", f"Speaker {speaker_id} is retired.", kind="conflict"
        )
    return speaker, tree


def create(session: Session, user: User | None, data: dict[str, Any]) -> Speaker:
    """Add a speaker to a grid (name and grid required)."""
    tree = regions.load_tree(session)
    speaker_id = check_id(data.get("id", data.get("speaker_id")))
    fields = clean_fields(tree, {"name": data.get("name"), "grid_code": data.get("grid_code"), **data}, user)
    check_pair(fields.get("latitude"), fields.get("longitude"))
    if session.get(Speaker, speaker_id) is not None:
        raise BroadcastError(
            "speaker_exists", f"终端编号已存在：{speaker_id}", f"Speaker exists: {speaker_id}", kind="conflict"
        )
    speaker = Speaker(id=speaker_id, **{k: v for k, v in fields.items() if k in EDITABLE})
    session.add(speaker)
    audit.record(
        session,
        _actor(user),
        "speaker.create",
        object_type="speaker",
        object_id=speaker_id,
        regions=[speaker.grid_code],
    )
    session.flush()
    return speaker


def update(session: Session, user: User | None, speaker_id: str, data: dict[str, Any]) -> tuple[Speaker, bool]:
    """Edit a speaker's fields (a new grid_code moves it); returns it and whether its broker topics changed.

    A move also records a signed `regions` command for the speaker's box, published by `sync_broker` after
    the commit, once the broker's ACL lets the new grid's topics through.
    """
    speaker, tree = _editable(session, user, speaker_id)
    fields = clean_fields(tree, {k: v for k, v in data.items() if k in EDITABLE}, user)
    latitude = fields.get("latitude", speaker.latitude)
    longitude = fields.get("longitude", speaker.longitude)
    check_pair(latitude, longitude)
    changes = {k: [getattr(speaker, k), v] for k, v in fields.items() if getattr(speaker, k) != v}
    for key, (_old, new) in changes.items():
        setattr(speaker, key, new)
    moved = "grid_code" in changes
    if changes:
        audit.record(
            session,
            _actor(user),
            "speaker.move" if moved else "speaker.update",
            object_type="speaker",
            object_id=speaker_id,
            regions=[speaker.grid_code],
            **changes,
        )
        session.flush()
    if moved:
        speaker_moves.issue(session, tree, speaker)
    return speaker, moved


def set_enabled(session: Session, user: User | None, speaker_id: str, enabled: bool) -> Speaker:
    """Disable a speaker (it gets no broadcasts and loses its broker account) or enable it again."""
    speaker, _tree = _editable(session, user, speaker_id)
    if speaker.enabled != enabled:
        speaker.enabled = enabled
        action = "speaker.enable" if enabled else "speaker.disable"
        audit.record(session, _actor(user), action, object_type="speaker", object_id=speaker_id)
        session.flush()
    return speaker


def retire(session: Session, user: User | None, speaker_id: str) -> Speaker:
    """Retire a speaker for good: disabled, broker account removed, history kept."""
    speaker, _tree = _editable(session, user, speaker_id)
    speaker.retired_at = utcnow()
    speaker.enabled = False
    speaker.broker_password_hash = None
    speaker.online = False
    audit.record(session, _actor(user), "speaker.retire", object_type="speaker", object_id=speaker_id)
    session.flush()
    return speaker


def provision(
    session: Session, platform: Platform, user: User | None, speaker_id: str, *, state_root: Path
) -> AgentConfig:
    """A fresh one-time configuration (new broker password) for the speaker's box."""
    speaker, _tree = _editable(session, user, speaker_id)
    if not speaker.enabled:
        raise BroadcastError(
            "speaker_disabled", f"终端已停用：{speaker_id}", f"Speaker {speaker_id} is disabled.", kind="conflict"
        )
    return provisioning.provision(session, platform, speaker_id, state_root=state_root, actor=_actor(user))


def replace(
    session: Session,
    platform: Platform,
    user: User | None,
    speaker_id: str,
    *,
    state_root: Path,
    sim_number: Any = None,
) -> AgentConfig:
    """A new box takes the speaker's identity and history: new credentials, health cleared, old box locked out."""
    speaker, _tree = _editable(session, user, speaker_id)
    if sim_number is not None:
        speaker.sim_number = check_text("sim_number", sim_number)
    speaker.enabled = True
    speaker.online = False
    speaker.last_seen = None
    speaker.agent_version = None
    speaker.playing_broadcast_id = None
    speaker.clock_offset_ms = None
    speaker.cache_bytes = None
    speaker.cache_cap_bytes = None
    speaker.schedule_synced_at = None
    speaker.state = None
    audit.record(session, _actor(user), "speaker.replace", object_type="speaker", object_id=speaker_id)
    return provisioning.provision(session, platform, speaker_id, state_root=state_root, actor=_actor(user))


def sync_broker(session: Session, platform: Platform) -> bool:
    """Rewrite the broker's password and ACL files: the embedded broker's (reloaded live) and those in
    MOSQUITTO_DIR (Mosquitto reads them on SIGHUP), then tell moved speakers their new regions (commands
    committed by `update`); True when any files were written."""
    written = bool(provisioning.sync_broker_files(session, platform))
    speaker_moves.send_pending(session, platform)
    return written


# What a page shows of each speaker (the API's and the console's list): plain rows, not ORM objects, which cost
# most of a read that misses the read cache; a row reads like a Speaker (`row.name`, `state_of(row)`).
PAGE_COLUMNS = (
    Speaker.id,
    Speaker.name,
    Speaker.grid_code,
    Speaker.online,
    Speaker.last_seen,
    Speaker.volume,
    Speaker.agent_version,
    Speaker.playing_broadcast_id,
    Speaker.clock_offset_ms,
    Speaker.cache_bytes,
    Speaker.rejected_count,
    Speaker.schedule_synced_at,
    Speaker.latitude,
    Speaker.longitude,
    Speaker.address,
    Speaker.notes,
    Speaker.sim_number,
    Speaker.test_speaker,
    Speaker.enabled,
    Speaker.broker_password_hash,
    Speaker.retired_at,
)


def _chain_query() -> Select[tuple[str]]:
    up = select(Region.code, Region.parent_code).where(Region.code == bindparam("code")).cte("up", recursive=True)
    up = up.union(select(Region.code, Region.parent_code).where(Region.code == up.c.parent_code))
    return select(up.c.code)


CHAIN = _chain_query()


def _chain(connection: Connection, code: str) -> set[str]:
    """The region's code and its ancestors' (as `regions.ancestors` walks them); empty when it does not exist."""
    return set(connection.scalars(CHAIN, {"code": code}))


@functools.cache
def _page_queries(state: str | None, scoped: bool) -> tuple[Select[tuple[int]], Select[Any]]:
    """The count and the page of a listing, built once per shape (state filter, scoped or not) and reused.

    A statement object used again skips SQLAlchemy's construction, cache-key and result-adaptation work, most
    of what a small Core read costs in Python. Parameters: `inner` (when scoped), `offset` and `limit`.
    """
    query = select(*PAGE_COLUMNS)
    if scoped:  # the grids in region `inner` (itself included), found by the database from the parent links
        down = select(Region.code, Region.level).where(Region.code == bindparam("inner")).cte("down", recursive=True)
        down = down.union(select(Region.code, Region.level).where(Region.parent_code == down.c.code))
        query = query.where(Speaker.grid_code.in_(select(down.c.code).where(down.c.level == "grid")))
    # Retired speakers are history: shown only when asked for.
    query = query.where(_state_filter(state) if state is not None else Speaker.retired_at.is_(None))
    count = query.with_only_columns(func.count()).select_from(Speaker)
    return count, query.order_by(Speaker.id).offset(bindparam("offset")).limit(bindparam("limit"))


@dataclass
class Page:
    """One page of speakers (PAGE_COLUMNS rows) and how many match in all."""

    items: list[Any]
    total: int
    page: int
    per_page: int


def state_of(speaker: Any) -> str:
    """retired, disabled, online, offline or never_seen (of a Speaker or a PAGE_COLUMNS row)."""
    if speaker.retired_at is not None:
        return "retired"
    if not speaker.enabled:
        return "disabled"
    if speaker.online:
        return "online"
    return "offline" if speaker.last_seen is not None else "never_seen"


def _state_filter(state: str) -> Any:
    if state == "retired":
        return Speaker.retired_at.is_not(None)
    active = Speaker.retired_at.is_(None)
    return {
        "disabled": active & Speaker.enabled.is_(False),
        "online": active & Speaker.enabled.is_(True) & Speaker.online.is_(True),
        "offline": active & Speaker.enabled.is_(True) & Speaker.online.is_(False) & Speaker.last_seen.is_not(None),
        "never_seen": active & Speaker.enabled.is_(True) & Speaker.online.is_(False) & Speaker.last_seen.is_(None),
    }[state]


def list_page(
    session: Session,
    user: User | Caller,
    *,
    region: str | None = None,
    state: str | None = None,
    page: int = 1,
    per_page: int = 100,
) -> Page:
    """Speakers in the user's scope, optionally inside `region` and in one state, ordered by id."""
    if state is not None and state not in STATES:
        raise BroadcastError(
            "invalid_state",
            f"状态无效：{state}（{'、'.join(STATES)}）",
            f"Unknown state: {state} ({', '.join(STATES)})",
        )
    if page < 1 or not 1 <= per_page <= 1000:
        raise BroadcastError("invalid_page", "页码从 1 开始，每页 1-1000 条。", "page ≥ 1, per_page 1-1000.")
    connection = session.connection()  # Core rows: no ORM objects, no flush
    inner = regions.user_scope(user)  # type: ignore[arg-type]
    if region is not None:
        chain = _chain(connection, region)
        if not chain:
            raise not_found("行政区域", "Region", region)
        if inner is None or inner in chain:
            inner = region
        elif region not in _chain(connection, inner):
            return Page(items=[], total=0, page=page, per_page=per_page)  # a region beside the user's own
    count, listing = _page_queries(state, inner is not None)
    params = {"inner": inner, "offset": (page - 1) * per_page, "limit": per_page}
    total = connection.scalar(count, params) or 0
    items = list(connection.execute(listing, params))
    return Page(items=items, total=total, page=page, per_page=per_page)
