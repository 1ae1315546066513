"""Console pages for approvals (先审后播: the queue, approve, reject with a comment) and the audit trail."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Response, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response as BaseResponse

from broadcast.console.views import console
from broadcast.errors import BroadcastError
from broadcast.i18n import message_of, texts
from broadcast.models import Broadcast, Clip, Schedule
from broadcast.services import approvals, audit_chain, audit_view, regions
from broadcast.web.context import client_address, db, platform
from broadcast.web.security import login_required

logger = logging.getLogger(__name__)
APPROVAL_STATE_LABELS = {
    "pending": _l("待审批"),
    "approved": _l("已批准"),
    "rejected": _l("已驳回"),
    "withdrawn": _l("已撤回"),
}
KIND_LABELS = {"broadcast": _l("广播"), "schedule": _l("定时计划")}
ACTION_LABELS = {
    "approval.submit": _l("提交审批"),
    "approval.approve": _l("批准"),
    "approval.reject": _l("驳回"),
    "broadcast.create": _l("发布广播"),
    "broadcast.stop": _l("停止广播"),
    "schedule.create": _l("新建定时计划"),
    "schedule.edit": _l("修改定时计划"),
    "schedule.pause": _l("暂停定时计划"),
    "schedule.resume": _l("恢复定时计划"),
    "schedule.delete": _l("删除定时计划"),
    "schedule.cancel_occurrence": _l("取消一次定时播放"),
    "clip.create": _l("制作音频"),
    "clip.edit": _l("修改音频"),
    "playlist.create": _l("新建节目单"),
    "login": _l("登录"),
    "logout": _l("退出登录"),
    "login.failed": _l("登录失败"),
    "login.locked": _l("登录被锁定"),
    "user.create": _l("新建用户"),
    "user.role": _l("修改角色或区域"),
    "user.disable": _l("停用用户"),
    "user.enable": _l("启用用户"),
    "user.password": _l("修改密码"),
    "user.reset_password": _l("重置密码"),
    "user.unlock": _l("解除锁定"),
    "user.language": _l("修改界面语言"),
    "token.create": _l("创建令牌"),
    "token.revoke": _l("吊销令牌"),
    "region.create": _l("新增区域"),
    "region.update": _l("修改区域"),
    "region.retire": _l("撤销区域"),
    "speaker.create": _l("新增终端"),
    "speaker.update": _l("修改终端"),
    "speaker.move": _l("终端换网格"),
    "speaker.provision": _l("终端配置"),
    "speaker.replace": _l("更换终端设备"),
    "speaker.retire": _l("终端退役"),
    "speaker.rejected_command": _l("终端拒绝指令"),
    "key.rotate": _l("更换签名密钥"),
    "instance.init": _l("系统初始化"),
}
PER_PAGE = 50


@console.app_context_processor
def approvals_badge() -> dict[str, Any]:
    """`approvals_waiting` on every logged-in page: what this user may approve now (the 待审批 badge)."""
    user = g.get("user")
    if user is None or user.role not in approvals.APPROVER_ROLES:
        return {"approvals_waiting": 0}
    return {"approvals_waiting": approvals.waiting_count(db(), user)}


def _subject(item: approvals.Approval) -> dict[str, Any]:
    """What the approver needs to judge: the broadcast's clip and time, or the schedule's title."""
    session = db()
    if item.kind == "broadcast":
        target = session.get(Broadcast, item.object_id)
        clip = session.get(Clip, target.clip_id) if target else None
        return {
            "url": url_for("console.broadcast_page", broadcast_id=item.object_id),
            "start_at": target.start_at if target else None,
            "priority": target.priority if target else None,
            "text": (clip.text or clip.title) if clip else "",
            "audio": url_for("media", name=f"{clip.sha256}.{clip.format}") if clip else None,
        }
    schedule = session.get(Schedule, item.object_id)
    return {
        "url": url_for("console.schedule_page", schedule_id=item.object_id),
        "start_at": None,
        "priority": schedule.priority if schedule else None,
        "text": schedule.title if schedule else "",
        "audio": None,
    }


def _approvals_page(error: str | None = None, status: int = 200) -> tuple[str, int]:
    session = db()
    pending = approvals.listing(session, g.user, state="pending")
    decided = approvals.listing(session, g.user, state="decided", limit=30)
    rows = [{"a": approvals.describe(session, a, g.user), "subject": _subject(a)} for a in pending]
    done = [approvals.describe(session, a, g.user) for a in decided]
    page = render_template(
        "approvals.html",
        rows=rows,
        decided=done,
        error=error or request.args.get("error"),
        notice=request.args.get("notice"),
        state_labels=texts(APPROVAL_STATE_LABELS),
        kind_labels=texts(KIND_LABELS),
    )
    return page, status


@console.get("/approvals")
@login_required
def approvals_page() -> tuple[str, int]:
    """The approval queue: what waits for this user's decision, and what this user submitted."""
    return _approvals_page()


@console.post("/approvals/<int:approval_id>/<action>")
@login_required
def approval_action(approval_id: int, action: str) -> BaseResponse | tuple[str, int]:
    """Approve (the broadcast goes out, the schedule resumes) or reject with a comment."""
    session = db()
    comment = request.form.get("comment")
    try:
        if action == "approve":
            approvals.approve(session, platform(), g.user, approval_id, comment, address=client_address())
            notice = _("已批准，广播已下发。")
        elif action == "reject":
            approvals.reject(session, g.user, approval_id, comment, address=client_address())
            notice = _("已驳回。")
        else:
            raise BroadcastError("not_found", "没有这个操作。", "No such action.", kind="not_found")
    except BroadcastError as exc:
        session.rollback()
        return _approvals_page(error=message_of(exc), status=404 if exc.kind == "not_found" else 422)
    return redirect(url_for("console.approvals_page", notice=notice))


def _audit_filters() -> audit_view.Filters:
    args = {k: request.args.get(k, "") for k in ("person", "region", "action", "since", "until")}
    return audit_view.filters_from(args, platform().timezone)


@console.get("/audit")
@login_required
def audit_page() -> tuple[str, int]:
    """The audit trail: the chain's verdict on top, filters (person, region, action, time), pages, CSV export."""
    session = db()
    p = platform()
    verdict = audit_chain.verify(session, audit_chain.derive_key(p.settings["SECRET_KEY"]))
    error, status = None, 200
    try:
        filters = _audit_filters()
    except BroadcastError as exc:
        filters, error, status = audit_view.Filters(), message_of(exc), 422
    page_no = request.args.get("page", "1")
    found = audit_view.search(session, g.user, filters, int(page_no) if page_no.isdigit() else 1, PER_PAGE)
    page = render_template(
        "audit.html",
        verdict=verdict,
        found=found,
        events=[audit_view.describe(e) for e in found.items],
        actions=audit_view.actions(session),
        action_labels=texts(ACTION_LABELS),
        region_choices=regions.visible_regions(session, g.user),
        args={k: request.args.get(k, "") for k in ("person", "region", "action", "since", "until")},
        error=error,
    )
    return page, status


@console.get("/audit.csv")
@login_required
def audit_csv() -> Response:
    """The filtered trail as CSV (UTF-8 with BOM, so Excel shows the Chinese text)."""
    session = db()
    body = audit_view.export_csv(session, g.user, _audit_filters(), platform().timezone)
    stamp = datetime.now(UTC).astimezone(platform().timezone).strftime("%Y%m%d-%H%M")
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=audit-{stamp}.csv", "Cache-Control": "no-store"},
    )
