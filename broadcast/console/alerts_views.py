"""Console pages for warnings (预警): the list with held alerts on top, one alert's coverage, the emergency button."""

from __future__ import annotations

import logging
from typing import Any

from flask import g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from broadcast.console.views import _tree_for, console
from broadcast.errors import BroadcastError
from broadcast.i18n import message_of, texts, ui_language
from broadcast.services import alert_inputs, alert_view, regions
from broadcast.web.context import db, platform
from broadcast.web.security import login_required

logger = logging.getLogger(__name__)
ALERT_STATE_LABELS = {
    "active": _l("播发中"),
    "held": _l("待确认"),
    "logged": _l("仅记录"),
    "superseded": _l("已被更新"),
    "cancelled": _l("已撤销"),
    "done": _l("已结束"),
}
ACTION_LABELS = {
    "received": _l("收到"),
    "broadcast": _l("播发"),
    "held": _l("等待确认"),
    "ignored": _l("忽略（仅记录）"),
    "duplicate": _l("重复消息"),
    "updated": _l("更新"),
    "cancelled": _l("撤销"),
}
ALERT_LEVEL_LABELS = {"red": _l("红色"), "orange": _l("橙色"), "yellow": _l("黄色"), "blue": _l("蓝色")}
ACTING_ROLES = alert_inputs.CONFIRM_ROLES


def _labels() -> dict[str, Any]:
    return {
        "alert_state_labels": texts(ALERT_STATE_LABELS),
        "action_labels": texts(ACTION_LABELS),
        "alert_level_labels": texts(ALERT_LEVEL_LABELS),
        "may_act": g.user.role in ACTING_ROLES,
        "confirm_words": alert_inputs.CONFIRM_WORDS_EN if ui_language() == "en" else alert_inputs.CONFIRM_WORDS,
    }


def _list_page(error: str | None = None, values: dict[str, Any] | None = None, status: int = 200) -> Any:
    session = db()
    items = alert_view.listing(session, user=g.user, limit=100)
    held = [a for a in items if a["state"] == "held"]
    held_details = [alert_view.describe(session, alert_view.get_visible(session, a["id"], g.user)) for a in held]
    page = render_template(
        "alerts.html",
        held=held_details,
        items=[a for a in items if a["state"] != "held"],
        tree=_tree_for(regions.visible_regions(session, g.user)),
        error=error or request.args.get("error"),
        values=values or {},
        **_labels(),
    )
    return page, status


@console.get("/alerts")
@login_required
def alerts_page() -> Any:
    """Every alert the user may see: held ones first (confirm or cancel), then the rest; the emergency button."""
    return _list_page()


@console.get("/alerts/<int:alert_id>")
@login_required
def alert_page(alert_id: int) -> str:
    """One alert: its text, coverage per township (live), every decision with its reason."""
    session = db()
    body = alert_view.describe(session, alert_view.get_visible(session, alert_id, g.user), g.user)
    return render_template("alert.html", a=body, error=request.args.get("error"), **_labels())


@console.post("/alerts/<int:alert_id>/<action>")
@login_required
def alert_action(alert_id: int, action: str) -> BaseResponse:
    """Release a held alert (with targets when its area was not resolved) or stop an open one."""
    session = db()
    try:
        if action == "confirm":
            targets = request.form.getlist("targets") or None
            alert_inputs.confirm(session, platform(), alert_id, g.user, targets=targets)
        elif action == "cancel":
            alert_inputs.cancel(session, platform(), alert_id, g.user)
        else:
            raise BroadcastError("unknown_action", "未知操作。", "Unknown action.", kind="not_found")
    except BroadcastError as exc:
        session.rollback()
        if exc.kind in ("not_found", "forbidden"):
            raise
        return redirect(url_for("console.alert_page", alert_id=alert_id, error=message_of(exc)))
    return redirect(url_for("console.alert_page", alert_id=alert_id))


@console.post("/alerts/manual")
@login_required
def alert_manual() -> Any:
    """The emergency button: text, targets and the typed confirmation (确认播发, or "confirm broadcast")."""
    session = db()
    values = {"text": request.form.get("text", ""), "targets": request.form.getlist("targets")}
    try:
        outcome = alert_inputs.manual(
            session,
            platform(),
            g.user,
            text=values["text"],
            targets=values["targets"],
            confirm_words=request.form.get("confirm", "").strip(),
        )
    except BroadcastError as exc:
        session.rollback()
        if exc.kind == "forbidden":
            raise
        return _list_page(error=message_of(exc), values=values, status=400)
    return redirect(url_for("console.alert_page", alert_id=outcome.alert_id))
