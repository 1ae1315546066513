"""Console pages for schedules: the calendar, the create form (no RRULE typing), one schedule and its history."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from broadcast.console.views import console
from broadcast.errors import BroadcastError, forbidden
from broadcast.i18n import message_of, texts, ui_language
from broadcast.services import library, regions, schedule_calendar, schedule_changes, schedules
from broadcast.web.context import client_address, db, platform
from broadcast.web.schedules_api import schedule_limits
from broadcast.web.security import login_required
from schedules import ScheduleError, choice_for, rrule_for
from schedules.forms import KINDS

logger = logging.getLogger(__name__)
KIND_LABELS = {
    "once": _l("只播一次"),
    "daily": _l("每天"),
    "workdays": _l("工作日（周一至周五）"),
    "weekly": _l("每周（选星期）"),
    "monthly_day": _l("每月某日"),
    "monthly_weekday": _l("每月第几个星期几"),
}
KEEP = "keep"  # editing: leave a rule the form cannot show as it is
WEEKDAY_LABELS = [_l("周一"), _l("周二"), _l("周三"), _l("周四"), _l("周五"), _l("周六"), _l("周日")]
RUN_LABELS = {
    "planned": _l("待播"),
    "paused": _l("已暂停"),
    "scheduled": _l("已下发终端计划"),
    "sent": _l("已下发"),
    "missed": _l("错过（未播）"),
    "cancelled": _l("已取消"),
    "refused": _l("被拒绝"),
}
STATE_LABELS = {"active": _l("运行中"), "paused": _l("已暂停"), "ended": _l("已结束"), "deleted": _l("已删除")}


def _int(value: str | None, default: int | None = None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def form_to_body(form: Any, *, editing: bool = False) -> dict[str, Any]:
    """The API body for the console form's simple choices (the form never asks for an RRULE).

    When editing a schedule whose rule the form cannot show (an expert RRULE or cron from the API), the
    choice "keep" leaves the rule as it is.
    """
    kind = form.get("kind") or "once"
    repeat: dict[str, Any] = {}
    if not (editing and kind == KEEP):
        rule = rrule_for(
            kind,
            days=[d for d in (_int(v) for v in form.getlist("days")) if d is not None],
            interval=_int(form.get("interval"), 1) or 1,
            monthday=_int(form.get("monthday")),
            nth=_int(form.get("nth")),
            weekday=_int(form.get("weekday")),
        )
        repeat = {"rrule": rule, "cron": None}
    content = form.get("content") or ""
    clip_id = content.removeprefix("clip:") if content.startswith("clip:") else None
    playlist_id = content.removeprefix("playlist:") if content.startswith("playlist:") else None
    end_kind = form.get("end") or "never"
    return {
        "title": form.get("title") or None,
        "clip_id": clip_id,
        "playlist_id": playlist_id,
        "targets": form.getlist("targets"),
        **repeat,
        "dtstart": f"{form.get('date', '')}T{form.get('time', '')}",
        "timezone": platform().settings["TIMEZONE"],
        "until": form.get("until") if end_kind == "until" else None,
        "count": _int(form.get("count")) if end_kind == "count" else None,
        "exdates": form.get("exdates") or None,
        "priority": form.get("priority") or "normal",
    }


def schedule_values(shown: dict[str, Any]) -> dict[str, Any]:
    """The form's values for a stored schedule (`schedules.describe`), so it is edited with the same choices."""
    choice = choice_for(shown["rrule"], shown["cron"]) or {"kind": KEEP}
    until, count = shown["until"], shown["count"]
    values: dict[str, Any] = {
        "title": shown["title"] or "",
        "content": f"clip:{shown['clip_id']}" if shown["clip_id"] else f"playlist:{shown['playlist_id']}",
        "targets": list(shown["targets"]),
        "date": shown["dtstart"][:10],
        "time": shown["dtstart"][11:16],
        "priority": shown["priority"],
        "exdates": ", ".join(shown["exdates"] or []),
        "end": "until" if until else ("count" if count else "never"),
        "until": until[:10] if until else "",
        "count": count or "",
    }
    for key, value in choice.items():
        values[key] = [str(d) for d in value] if isinstance(value, list) else str(value)
    return values


def _form_page(values: dict[str, Any], **extra: Any) -> str:
    session = db()
    kinds = [(k, str(KIND_LABELS[k])) for k in KINDS]
    if values.get("kind") == KEEP:
        kinds.insert(0, (KEEP, _("保持现有规则（%(rule)s）", rule=extra.get("summary", ""))))
    return render_template(
        "schedule_form.html",
        values=values,
        kinds=kinds,
        weekdays=list(enumerate(WEEKDAY_LABELS)),
        regions=regions.visible_regions(session, g.user),
        clips=library.clips_for(session, g.user),
        playlists=library.playlists_for(session, g.user),
        **extra,
    )


@console.route("/schedules/new", methods=["GET", "POST"])
@login_required
def schedule_new() -> str | BaseResponse:
    """The create form: preview (summary, next plays, overlaps) first, then save."""
    if request.method == "GET":
        return _form_page({"time": "07:30", "date": date.today().isoformat(), "kind": "daily"})
    values = request.form.to_dict(flat=True) | {"days": request.form.getlist("days")}
    values["targets"] = request.form.getlist("targets")
    session = db()
    try:
        body = form_to_body(request.form)
        if request.form.get("action") != "save":
            limits = schedule_limits()
            shown = schedules.preview(session, g.user, platform().rules, limits, body, language=ui_language())
            return _form_page(values, preview=shown)
        item, _ = schedules.create(session, g.user, platform().rules, schedule_limits(), body, address=client_address())
    except (BroadcastError, ScheduleError) as exc:
        session.rollback()
        return _form_page(values, error=message_of(exc))
    session.commit()
    return redirect(url_for("console.schedule_page", schedule_id=item.id))


@console.route("/schedules/<int:schedule_id>/edit", methods=["GET", "POST"])
@login_required
def schedule_edit(schedule_id: int) -> str | BaseResponse:
    """Edit a schedule with the create form's choices: preview (summary, next plays, overlaps), then save."""
    session = db()
    item = schedules.get(session, schedule_id, g.user)
    if g.user.role == "viewer":
        raise forbidden("只读用户不能修改定时计划。", "A viewer cannot change schedules.")
    shown = schedules.describe(session, item, with_history=False, language=ui_language())
    page = {"editing": item.id, "summary": shown["summary"]}
    if request.method == "GET":
        return _form_page(schedule_values(shown), **page)
    values = request.form.to_dict(flat=True) | {"days": request.form.getlist("days")}
    values["targets"] = request.form.getlist("targets")
    p = platform()
    try:
        body = form_to_body(request.form, editing=True)
        if request.form.get("action") != "save":
            preview = schedules.preview(
                session, g.user, p.rules, schedule_limits(), body | _kept(shown, body), item.id, language=ui_language()
            )
            return _form_page(values, preview=preview, **page)
        _, stops, _ = schedule_changes.update(
            session, g.user, p.rules, schedule_limits(), item.id, body, address=client_address()
        )
    except (BroadcastError, ScheduleError) as exc:
        session.rollback()
        if exc.kind in ("not_found", "forbidden"):
            raise
        return _form_page(values, error=message_of(exc), **page)
    session.commit()
    schedule_changes.publish(p, stops)
    return redirect(url_for("console.schedule_page", schedule_id=schedule_id))


def _kept(shown: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """What the form leaves unchanged (a kept rule, the volume, the grace), for the preview."""
    kept = {k: shown[k] for k in ("volume", "grace_s")}
    if "rrule" not in body:
        kept |= {"rrule": shown["rrule"], "cron": shown["cron"]}
    return kept


@console.get("/schedules")
@login_required
def schedules_calendar() -> str:
    """The calendar of the user's region: day, week or month."""
    tz = platform().timezone
    try:
        start = date.fromisoformat(request.args.get("start", ""))
    except ValueError:
        start = None
    view, first, days = schedule_calendar.window(request.args.get("view", "week"), start, datetime.now(tz).date())
    session = db()
    return render_template(
        "schedules.html",
        view=view,
        first=first,
        days=schedule_calendar.calendar(session, g.user, first, days, tz),
        neighbours=schedule_calendar.neighbours(view, first, days),
        items=schedules.list_for(session, g.user),
        run_labels=texts(RUN_LABELS),
        state_labels=texts(STATE_LABELS),
        weekday_names=[str(name) for name in WEEKDAY_LABELS],
        describe=lambda s: schedules.describe(session, s, with_history=False, language=ui_language()),
    )


@console.get("/schedules/<int:schedule_id>")
@login_required
def schedule_page(schedule_id: int) -> str:
    """One schedule: summary, next plays (each can be cancelled), and what happened to each occurrence."""
    session = db()
    item = schedules.get(session, schedule_id, g.user)
    return render_template(
        "schedule.html",
        s=schedules.describe(session, item, language=ui_language()),
        run_labels=texts(RUN_LABELS),
        state_labels=texts(STATE_LABELS),
        error=request.args.get("error"),
    )


@console.post("/schedules/<int:schedule_id>/<action>")
@login_required
def schedule_action(schedule_id: int, action: str) -> BaseResponse:
    """Pause, resume, delete, or cancel one occurrence; then back to the schedule's page."""
    session = db()
    p = platform()
    try:
        if action in ("pause", "resume"):
            _, stops, _ = schedule_changes.update(
                session,
                g.user,
                p.rules,
                schedule_limits(),
                schedule_id,
                {"paused": action == "pause"},
                address=client_address(),
            )
        elif action == "delete":
            _, stops = schedule_changes.delete(session, g.user, schedule_id, address=client_address())
        elif action == "cancel":
            _, stops = schedule_changes.cancel_occurrence(
                session, g.user, schedule_id, request.form.get("at"), address=client_address()
            )
        else:
            raise BroadcastError("unknown_action", "未知操作。", "Unknown action.", kind="not_found")
    except (BroadcastError, ScheduleError) as exc:
        session.rollback()
        if exc.kind in ("not_found", "forbidden"):
            raise
        return redirect(url_for("console.schedule_page", schedule_id=schedule_id, error=message_of(exc)))
    session.commit()
    schedule_changes.publish(p, stops)
    return redirect(url_for("console.schedule_page", schedule_id=schedule_id))
