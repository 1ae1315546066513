"""Console pages: login, compose and send, broadcast progress, speaker health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from broadcast.errors import BroadcastError
from broadcast.models import PRIORITIES, Broadcast, Clip, Speaker
from broadcast.services import accounts, broadcasts, clips, fleet, regions
from broadcast.services.sending import send_broadcast
from broadcast.web.context import client_address, db, platform
from broadcast.web.security import login_required
from broadcast.web.views import speaker_json
from media import list_voices

console = Blueprint(
    "console", __name__, template_folder="templates", static_folder="static", static_url_path="/static/console"
)

PRIORITY_LABELS = {"emergency": "应急", "urgent": "紧急通知", "normal": "日常", "background": "背景"}
STATE_LABELS = {
    "queued": "排队中",
    "sent": "已下发",
    "acknowledged": "已确认",
    "playing": "播放中",
    "finished": "已播完",
    "failed": "失败",
    "preempted": "被插播中断",
    "missed": "未播（离线）",
    "rejected": "被终端拒绝",
}
STATUS_LABELS = {"scheduled": "定时待播", "sending": "下发中", "playing": "播放中", "done": "已完成"}
LEVEL_LABELS = {"county": "县", "township": "乡镇", "village": "村/社区", "grid": "网格"}
WARNING_LABELS = {"media.clipped_input": "原始录音有明显削波（爆音），已尽量处理，建议重新录制。"}


@console.app_context_processor
def labels() -> dict[str, Any]:
    """Chinese labels every template may use."""
    return {
        "PRIORITY_LABELS": PRIORITY_LABELS,
        "STATE_LABELS": STATE_LABELS,
        "STATUS_LABELS": STATUS_LABELS,
        "LEVEL_LABELS": LEVEL_LABELS,
        "WARNING_LABELS": WARNING_LABELS,
        "current_user": g.get("user"),
    }


@console.app_template_filter("localtime")
def localtime(value: str | None) -> str:
    """An ISO timestamp shown in the deployment's time zone, to the minute."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(platform().timezone).strftime("%Y-%m-%d %H:%M")


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("console.compose")


@console.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse:
    """The login form; failures are counted and locked out across all workers."""
    error = None
    if request.method == "POST":
        settings = platform().settings
        try:
            user = accounts.login(
                db(),
                request.form.get("username", "").strip(),
                request.form.get("password", ""),
                client_address(),
                max_failures=settings["LOGIN_MAX_FAILURES"],
                lock_seconds=settings["LOGIN_LOCK_S"],
            )
        except BroadcastError as exc:
            error = exc.zh
        else:
            db().commit()
            session.clear()
            session.permanent = True
            session["user_id"] = user.id
            session["pw"] = user.password_hash[-12:]  # a password change ends every session
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=error)


@console.post("/logout")
def logout() -> BaseResponse:
    """End the session."""
    session.clear()
    return redirect(url_for("console.login"))


def _tree_for(user_regions: list[Any]) -> list[dict[str, Any]]:
    """Nested region tree for the picker."""
    nodes = {r.code: {"region": r, "children": []} for r in user_regions}
    roots = []
    for _code, node in nodes.items():
        parent = node["region"].parent_code
        if parent in nodes:
            nodes[parent]["children"].append(node)
        else:
            roots.append(node)
    return roots


@console.get("/")
@login_required
def compose() -> str:
    """Compose a notice: text or a recording, targets, priority, time."""
    session_ = db()
    p = platform()
    tree = _tree_for(regions.visible_regions(session_, g.user))
    return render_template(
        "compose.html",
        tree=tree,
        priorities=PRIORITIES,
        voices=list_voices(p.media),
        default_volume=p.settings["DEFAULT_VOLUME"],
        max_text=p.media.max_text_chars,
        max_upload_mb=p.settings["MAX_UPLOAD_MB"],
    )


@console.post("/send")
@login_required
def send() -> BaseResponse:
    """Make the clip and the broadcast, send it and show its progress."""
    session_ = db()
    p = platform()
    upload = request.files.get("file")
    if request.form.get("clip_id"):
        clip = clips.get(session_, request.form["clip_id"], g.user)  # made and previewed on this page
    elif upload is not None and upload.filename:
        clip = clips.from_upload(
            session_,
            p.media_store,
            p.media,
            upload.stream,
            user=g.user,
            title=request.form.get("title") or upload.filename[:100],
        )
    else:
        clip = clips.from_text(
            session_,
            p.media_store,
            p.media,
            request.form.get("text", ""),
            user=g.user,
            voice=request.form.get("voice") or None,
            rate=_rate(request.form.get("rate")),
        )
    item = broadcasts.create(
        session_,
        g.user,
        platform().rules,
        clip_id=clip.id,
        targets=request.form.getlist("targets"),
        priority=request.form.get("priority") or None,
        volume=request.form.get("volume") or None,
        repeat=request.form.get("repeat") or None,
        start_at=request.form.get("start_at") or None,
        source="console",
        address=client_address(),
    )
    send_broadcast(session_, p, item)
    return redirect(url_for("console.broadcast_page", broadcast_id=item.id))


def _rate(value: str | None) -> float:
    try:
        rate = float(value or 1.0)
    except ValueError:
        rate = 1.0
    return min(max(rate, 0.5), 2.0)


@console.get("/broadcasts")
@login_required
def broadcast_list() -> str:
    """Recent broadcasts the user may see."""
    session_ = db()
    recent = session_.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(100))
    tree = regions.load_tree(session_)
    items = [b for b in recent if broadcasts.visible(session_, b, g.user, tree)][:50]
    rows = [(b, broadcasts.counts(session_, b.id), session_.get(Clip, b.clip_id)) for b in items]
    return render_template("broadcasts.html", rows=rows)


@console.get("/broadcasts/<int:broadcast_id>")
@login_required
def broadcast_page(broadcast_id: int) -> str:
    """One broadcast, speaker by speaker; the page refreshes itself."""
    session_ = db()
    data = broadcasts.view(session_, broadcast_id, g.user)
    names = {
        s.id: s.name
        for s in session_.scalars(select(Speaker).where(Speaker.id.in_([d["speaker_id"] for d in data["deliveries"]])))
    }
    return render_template("broadcast.html", b=data, names=names, clip=session_.get(Clip, data["clip_id"]))


def _speakers_for_user() -> list[dict[str, Any]]:
    session_ = db()
    tree = regions.load_tree(session_)
    scope = regions.user_scope(g.user)
    out = []
    for s in session_.scalars(select(Speaker).order_by(Speaker.grid_code, Speaker.id)):
        if regions.within(tree, s.grid_code, scope):
            row = speaker_json(s)
            row["path"] = " / ".join(tree[c].name for c in reversed(regions.ancestors(tree, s.grid_code)))
            out.append(row)
    return out


@console.get("/speakers")
@login_required
def speakers_page() -> str:
    """Every speaker in the user's region with online/offline state."""
    rows = _speakers_for_user()
    online = sum(1 for r in rows if r["online"])
    alarms = fleet.alarms(db(), g.user)
    return render_template("speakers.html", rows=rows, online=online, alarms=alarms, kinds=fleet.KIND_LABELS)
