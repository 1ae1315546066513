"""Console pages: login, compose and send, broadcast progress, speaker health."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from broadcast.console import words
from broadcast.errors import BroadcastError, is_shaped, status_of
from broadcast.i18n import LANGUAGES, message_of, texts, ui_language
from broadcast.models import PRIORITIES, Broadcast, Clip, Speaker, User
from broadcast.services import accounts, broadcasts, clips, fleet, history, regions, user_admin
from broadcast.services.sending import send_broadcast
from broadcast.web.context import client_address, db, platform
from broadcast.web.errors import respond
from broadcast.web.security import login_required
from broadcast.web.views import speaker_json
from media import list_voices
from media.tts import ENGINES

logger = logging.getLogger(__name__)

console = Blueprint(
    "console", __name__, template_folder="templates", static_folder="static", static_url_path="/static/console"
)

PRIORITY_LABELS = {"emergency": _l("应急"), "urgent": _l("紧急通知"), "normal": _l("日常"), "background": _l("背景")}
STATE_LABELS = {
    "held": _l("待审批"),  # approvals: no command until approved
    "queued": _l("排队中"),
    "sent": _l("已下发"),
    "acknowledged": _l("已确认"),
    "playing": _l("播放中"),
    "finished": _l("已播完"),
    "failed": _l("失败"),
    "preempted": _l("被插播中断"),
    "missed": _l("未播（离线）"),
    "rejected": _l("被终端拒绝"),
}
STATUS_LABELS = {"scheduled": _l("定时待播"), "sending": _l("下发中"), "playing": _l("播放中"), "done": _l("已完成")}
STATUS_LABELS |= {"pending_approval": _l("待审批"), "rejected": _l("已驳回")}  # approvals (先审后播)
LEVEL_LABELS = {"county": _l("县"), "township": _l("乡镇"), "village": _l("村/社区"), "grid": _l("网格")}
WARNING_LABELS = {
    "media.clipped_input": _l("原始录音有明显削波（爆音），已尽量处理，建议重新录制。"),
    clips.VOICE_FALLBACK: _l("所选发音人暂时无法使用（在线语音合成连不上），已改用下面显示的发音人。可稍后重新试听。"),
    clips.CONTROL_REMOVED: _l("文字中的控制字符已删除。"),
}
ENGINE_LABELS = {
    "edge": _l("在线神经网络合成（Edge）"),
    "espeak": _l("离线合成（espeak-ng）"),
    "piper": _l("离线神经网络合成（Piper）"),
}  # the engines' own label_zh, translatable here
# Refusals that are not a mistake in the form: they keep their own page (and a 403 its audit entry).
PAGE_ERRORS = {"forbidden", "unauthorized", "rate_limited"}
for _word in (words.clip_label, words.sender_label, words.alarm_detail):
    console.add_app_template_global(_word)


@console.app_context_processor
def labels() -> dict[str, Any]:
    """Labels in the user's language, and the deployment's time zone, every template may use."""
    zone = platform().timezone
    return {
        "PRIORITY_LABELS": texts(PRIORITY_LABELS),
        "STATE_LABELS": texts(STATE_LABELS),
        "STATUS_LABELS": texts(STATUS_LABELS),
        "LEVEL_LABELS": texts(LEVEL_LABELS),
        "WARNING_LABELS": texts(WARNING_LABELS),
        "UI_TEXTS": texts(words.JS_TEXTS),
        "TIMEZONE": zone.key,
        "UTC_OFFSET_MIN": round((datetime.now(zone).utcoffset() or timedelta()).total_seconds() / 60),
        "current_user": g.get("user"),
    }


@console.app_template_filter("localtime")
def localtime(value: str | None) -> str:
    """An ISO timestamp shown in the deployment's time zone, to the minute."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(platform().timezone).strftime("%Y-%m-%d %H:%M")


@console.app_template_filter("when")
def when(value: datetime | float | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored time (an aware datetime, or unix seconds) shown in the deployment's time zone."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(float(value), UTC)
    return moment.astimezone(platform().timezone).strftime(fmt)


@console.app_template_filter("cut")
def cut(value: str | None, limit: int = 40) -> str:
    """Text shortened to LIMIT characters, with an ellipsis when something was cut."""
    text = " ".join((value or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_next(target: str | None) -> str:
    """Where to go after login: a page of this site (never another host), else the compose page."""
    fallback = url_for("console.compose")
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith(("//", "/\\")):
        return fallback
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "\\" for ch in target):
        return fallback  # tabs, newlines and backslashes are how "/%09/evil.example" leaves the site
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    try:
        current_app.url_map.bind("").match(parts.path, method="GET")  # a page this site really has
    except HTTPException:
        return fallback
    return target


@console.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse | tuple[str, int, dict[str, str]]:
    """The login form; failures slow the (name, address) pair down with growing waits (429)."""
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
            if exc.kind == "rate_limited":
                wait = str(exc.details.get("retry_after_s", 60))
                return render_template("login.html", error=message_of(exc)), 429, {"Retry-After": wait}
            return render_template("login.html", error=message_of(exc))
        db().commit()
        session.clear()
        session.permanent = True
        login_user(user)
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", error=None)


@console.post("/logout")
def logout() -> BaseResponse:
    """End the session here and on every other device: a copied cookie stops working too."""
    user = g.get("user")
    if user is not None:
        accounts.end_sessions(db(), user, actor=user.username)
        db().commit()
    logout_user()
    session.clear()
    return redirect(url_for("console.login"))


@console.post("/language")
@login_required
def set_language() -> BaseResponse:
    """The user's own console language (zh or en; anything else: back to the deployment's default)."""
    chosen = request.form.get("language", "")
    user_admin.set_own_language(db(), g.user, chosen if chosen in LANGUAGES else None)
    db().commit()
    return redirect(safe_next(request.form.get("next")))


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


def _typed() -> dict[str, Any]:
    """What the user typed and chose on the compose form, to put back into it after a refusal."""
    form = request.form
    return {
        "text": form.get("text", ""),
        "voice": form.get("voice", ""),
        "rate": form.get("rate", ""),
        "title": form.get("title", ""),
        "clip_id": form.get("clip_id", ""),
        "targets": set(form.getlist("targets")),
        "priority": form.get("priority", ""),
        "volume": form.get("volume", ""),
        "repeat": form.get("repeat", ""),
        "start_at": form.get("start_at", ""),
        "tab": "upload" if "file" in request.files and request.files["file"].filename else form.get("tab", "text"),
    }


def _compose_page(typed: dict[str, Any] | None = None, error: dict[str, str] | None = None) -> str:
    session_ = db()
    p = platform()
    clip = None
    if typed and typed.get("clip_id"):
        try:
            clip = clips.get(session_, typed["clip_id"], g.user)  # the previewed clip is kept
        except BroadcastError:
            typed["clip_id"] = ""
    voices = list_voices(p.media)
    return render_template(
        "compose.html",
        tree=_tree_for(regions.visible_regions(session_, g.user)),
        priorities=PRIORITIES,
        voices=voices,
        voice_labels={v.id: voice_label(v) for v in voices},
        engine_labels=texts(engine_labels()),
        default_volume=p.settings["DEFAULT_VOLUME"],
        max_text=p.media.max_text_chars,
        max_upload_mb=p.settings["MAX_UPLOAD_MB"],
        typed=typed or {},
        chosen=(typed or {}).get("targets", set()),
        kept_clip=clip,
        error=error,
    )


@console.get("/")
@login_required
def compose() -> str:
    """Compose a notice: text or a recording, targets, priority, time."""
    return _compose_page()


@console.post("/send")
@login_required
def send() -> BaseResponse | tuple[str, int]:
    """Make the clip and the broadcast and send it; a refusal shows on the same form with everything kept."""
    typed = _typed()
    try:
        item = _make_and_send(typed)
    except Exception as exc:
        if not is_shaped(exc) or exc.kind in PAGE_ERRORS:  # type: ignore[attr-defined]
            raise  # not a form mistake (no right to do this, too many tries, a bug): the error page says so
        db().rollback()
        logger.info("compose form refused: %s", exc.code)  # type: ignore[attr-defined]
        error = {"code": exc.code, "message": message_of(exc)}  # type: ignore[attr-defined]
        return _compose_page(typed, error), status_of(exc)  # type: ignore[arg-type]
    return redirect(url_for("console.broadcast_page", broadcast_id=item.id))


@console.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Response | tuple[str, int]:
    """A too-large upload from the compose form comes back to the form (its body was never read, so it is empty)."""
    limit = platform().settings["MAX_UPLOAD_MB"]
    zh = f"上传的文件太大（最大 {limit} MB），请换一个较小的文件。"
    en = f"The upload is larger than {limit} MB; choose a smaller file."
    if g.get("user") is None and getattr(current_user, "is_authenticated", False):
        g.user = current_user._get_current_object()  # type: ignore[attr-defined]  # refused before the user loaded
    too_large = BroadcastError("too_large", zh, en, kind="too_large")
    if request.endpoint != "console.send" or g.get("user") is None:
        return respond(too_large, 413)
    return _compose_page(None, {"code": "too_large", "message": message_of(too_large)}), 413


def _make_and_send(typed: dict[str, Any]) -> Broadcast:
    session_ = db()
    p = platform()
    upload = request.files.get("file")
    if typed["clip_id"]:
        clip = clips.get(session_, typed["clip_id"], g.user)  # made and previewed on this page
    elif upload is not None and upload.filename:
        clip = clips.from_upload(
            session_,
            p.media_store,
            p.media,
            upload.stream,
            user=g.user,
            title=typed["title"].strip() or upload_title(upload.filename),
        )
    else:
        clip = clips.from_text(
            session_,
            p.media_store,
            p.media,
            typed["text"],
            user=g.user,
            voice=typed["voice"] or None,
            rate=_rate(typed["rate"]),
            title=typed["title"].strip() or None,
        )
    item = broadcasts.create(
        session_,
        g.user,
        p.rules,
        clip_id=clip.id,
        targets=request.form.getlist("targets"),
        priority=typed["priority"] or None,
        volume=typed["volume"] or None,
        repeat=typed["repeat"] or None,
        start_at=typed["start_at"] or None,
        source="console",
        address=client_address(),
    )
    send_broadcast(session_, p, item)
    return item


def upload_title(filename: str) -> str:
    """A recording's title from its file name: no folders, no extension, at most 100 characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    return (stem.strip() or name)[:100]


def _rate(value: str | None) -> float:
    try:
        rate = float(value or 1.0)
    except ValueError:
        rate = 1.0
    return min(max(rate, 0.5), 2.0)


@console.get("/broadcasts")
@login_required
def broadcast_list() -> str:
    """Recent broadcasts the user may see, with date, sender and counts."""
    return render_template("broadcasts.html", rows=history.recent(db(), g.user))


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
    item = session_.get(Broadcast, broadcast_id)
    sender = history.sender_of(item, session_.get(User, item.created_by) if item and item.created_by else None)
    sender = words.sender_label(item, sender) if item else sender
    clip = session_.get(Clip, data["clip_id"])
    return render_template(
        "broadcast.html",
        b=data,
        names=names,
        clip=clip,
        clip_label=words.clip_label(clip),
        sender=sender,
        voice_label=_voice_label(clip),
    )


def _voice_label(clip: Clip | None) -> str:
    """The voice that really spoke a clip, in words ("晓晓（女声，温暖）· 在线神经网络合成（Edge）")."""
    if clip is None or clip.source != "tts" or not clip.engine:
        return ""
    labels = {v.id: voice_label(v) for v in list_voices(platform().media)}
    return f"{labels.get(clip.voice or '', clip.voice or '')} · {engine_labels().get(clip.engine, clip.engine)}"


def engine_labels() -> dict[str, Any]:
    """Every TTS engine's name in words (an engine this console does not know keeps its own label)."""
    return {name: ENGINE_LABELS.get(name, engine.label_zh) for name, engine in ENGINES.items()}


def voice_label(voice: Any) -> str:
    """A voice in the picker: its Chinese label, or in English its id and whether it needs the internet."""
    if ui_language() == "zh":
        return voice.label
    return _("%(voice)s（在线）", voice=voice.id) if voice.online else _("%(voice)s（离线）", voice=voice.id)


def _speakers_for_user() -> list[dict[str, Any]]:
    session_ = db()
    tree = regions.load_tree(session_)
    scope = regions.user_scope(g.user)
    playing = history.now_playing(session_)
    out = []
    for s in session_.scalars(select(Speaker).order_by(Speaker.grid_code, Speaker.id)):
        if regions.within(tree, s.grid_code, scope):
            row = speaker_json(s)
            row["playing"] = playing.get(s.id) if s.online else None
            row["path"] = " / ".join(tree[c].name for c in reversed(regions.ancestors(tree, s.grid_code)))
            out.append(row)
    return out


@console.get("/speakers")
@login_required
def speakers_page() -> str:
    """Every speaker in the user's region with online/offline state."""
    rows = _speakers_for_user()
    online = sum(1 for r in rows if r["online"])
    alarms = fleet.alarms(db(), g.user, last_plays=words.LAST_PLAYS, rejection_hours=words.REJECTION_HOURS)
    return render_template("speakers.html", rows=rows, online=online, alarms=alarms, kinds=texts(words.ALARM_LABELS))


@console.get("/speakers/live")
@login_required
def speakers_live() -> Response:
    """What the speakers page refreshes itself from: online and now playing, by the same rules as the page."""
    rows = _speakers_for_user()
    return jsonify({"items": [{"id": r["id"], "online": r["online"], "playing": r["playing"]} for r in rows]})
