"""Reading the audit trail: filter by person, region, action and time within the reader's scope; CSV export.

An admin reads the whole county; an operator reads the events of their region: those naming a region or speaker
inside it, and those of people bound inside it. Filtering by region reads the matching rows in order (region
lists are JSON, which neither database indexes alike), so it costs a pass over the events that pass the other
filters; without a region filter an admin's page is two plain queries.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import AuditEvent, Region, Speaker, User
from broadcast.services import regions

logger = logging.getLogger(__name__)
READER_ROLES = ("admin", "operator")
CSV_HEADERS = ["时间", "操作人", "动作", "对象类型", "对象", "区域", "来源地址", "详情", "链序号"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a cell Excel would run as a formula


@dataclass(frozen=True)
class Filters:
    """What the reader asked for; None means any."""

    person: str | None = None
    region: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass
class Page:
    """One page of events, with the total that matched."""

    items: list[AuditEvent]
    total: int
    page: int
    per_page: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        self.pages = max(1, -(-self.total // self.per_page))


def parse_day(value: str | None, timezone: ZoneInfo, *, end: bool = False) -> datetime | None:
    """A local date (YYYY-MM-DD) as the start of that day, or the start of the next one when `end`."""
    if not value:
        return None
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        raise BroadcastError(
            "invalid_date",
            f"日期格式无效：{value:.20}（例如 2026-11-25）",
            f"Invalid date: {value:.20} (e.g. 2026-11-25)",
        ) from None
    moment = datetime.combine(day, time(0), tzinfo=timezone)
    return moment + timedelta(days=1) if end else moment


def filters_from(args: dict[str, str], timezone: ZoneInfo) -> Filters:
    """Filters from the page's query arguments (person, region, action, since, until)."""
    since = parse_day(args.get("since"), timezone)
    until = parse_day(args.get("until"), timezone, end=True)
    if since is not None and until is not None and until <= since:
        raise BroadcastError("invalid_range", "结束日期早于开始日期。", "The end date is before the start date.")
    return Filters(
        person=(args.get("person") or "").strip() or None,
        region=(args.get("region") or "").strip() or None,
        action=(args.get("action") or "").strip() or None,
        since=since,
        until=until,
    )


class _Scope:
    """Decides whether an event lies inside a region: by the regions and speakers it names, or by its actor."""

    def __init__(self, session: Session, code: str) -> None:
        self.session = session
        self.code = code
        self.tree: dict[str, Region] = regions.load_tree(session)
        self.grids: dict[str, str | None] = {}
        inside = session.scalars(select(User).where(User.region_code.is_not(None)))
        self.people = {u.username for u in inside if regions.within(self.tree, u.region_code or "", code)}

    def _grid(self, target: str) -> str | None:
        if target in self.tree:
            return target
        if target not in self.grids:
            self.grids[target] = getattr(self.session.get(Speaker, target), "grid_code", None)
        return self.grids[target]

    def holds(self, event: AuditEvent, by_actor: bool) -> bool:
        """True when the event names a place inside the region (or, when `by_actor`, a person bound inside it)."""
        for target in event.region_codes or []:
            grid = self._grid(str(target))
            if grid is not None and regions.within(self.tree, grid, self.code):
                return True
        return by_actor and event.actor in self.people


def _reader_scope(user: User) -> str | None:
    if user.role not in READER_ROLES:
        raise forbidden("只有管理员和操作员可以查看审计日志。", "Only admins and operators may read the audit trail.")
    if user.role == "admin":
        return None
    if not user.region_code:
        raise forbidden("您的账号未绑定区域，不能查看审计日志。", "Your account has no region: no audit trail to show.")
    return user.region_code


def _query(filters: Filters) -> Select[tuple[AuditEvent]]:
    query = select(AuditEvent)
    if filters.person:
        query = query.where(AuditEvent.actor == filters.person)
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.since:
        query = query.where(AuditEvent.at >= filters.since)
    if filters.until:
        query = query.where(AuditEvent.at < filters.until)
    return query


def _matching(session: Session, user: User, filters: Filters) -> Iterator[AuditEvent]:
    scope = _reader_scope(user)
    mine = _Scope(session, scope) if scope else None
    chosen = _Scope(session, filters.region) if filters.region else None
    for event in session.scalars(_query(filters).order_by(AuditEvent.id.desc())).yield_per(500):
        if mine is not None and not mine.holds(event, by_actor=True):
            continue
        if chosen is not None and not chosen.holds(event, by_actor=False):
            continue
        yield event


def search(session: Session, user: User, filters: Filters, page: int = 1, per_page: int = 50) -> Page:
    """One page of the events the user may read that match the filters, newest first."""
    page, per_page = max(1, page), min(max(1, per_page), 500)
    if _reader_scope(user) is None and filters.region is None:
        query = _query(filters)
        total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
        rows = session.scalars(query.order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page))
        return Page(list(rows), total, page, per_page)
    start, items, total = (page - 1) * per_page, [], 0
    for event in _matching(session, user, filters):
        if start <= total < start + per_page:
            items.append(event)
        total += 1
    return Page(items, total, page, per_page)


def actions(session: Session) -> list[str]:
    """Every action name the trail holds, for the filter's list."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_rows(event: AuditEvent, timezone: ZoneInfo) -> list[str]:
    """One event as the export's row (local time, Chinese headers; formulas defused)."""
    detail = json.dumps(event.detail, ensure_ascii=False, sort_keys=True, default=str) if event.detail else ""
    return [
        _cell(event.at.astimezone(timezone).strftime("%Y-%m-%d %H:%M:%S")),
        _cell(event.actor),
        _cell(event.action),
        _cell(event.object_type),
        _cell(event.object_id),
        _cell(" ".join(str(c) for c in event.region_codes or [])),
        _cell(event.address),
        _cell(detail),
        _cell(event.chain_seq),
    ]


def export_csv(session: Session, user: User, filters: Filters, timezone: ZoneInfo) -> bytes:
    """Every matching event as CSV in UTF-8 with a BOM, so Excel opens the Chinese text correctly."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADERS)
    for event in _matching(session, user, filters):
        writer.writerow(csv_rows(event, timezone))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def describe(event: AuditEvent) -> dict[str, Any]:
    """An event as the page shows it."""
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "regions": list(event.region_codes or []),
        "address": event.address,
        "detail": event.detail or {},
        "chain_seq": event.chain_seq,
    }
