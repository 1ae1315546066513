"""Console pages for the county's data: regions, speakers, spreadsheet import and the speaker map."""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from typing import Any

from flask import Response, abort, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from broadcast.console.views import LEVEL_LABELS, console
from broadcast.errors import BroadcastError, forbidden
from broadcast.i18n import message_of, texts
from broadcast.models import Region, Speaker
from broadcast.services import imports, region_admin, regions, speaker_admin
from broadcast.web.admin_api import DEVICE_STATE_ROOT, speaker_admin_json
from broadcast.web.context import db, platform
from broadcast.web.security import login_required

logger = logging.getLogger(__name__)

SPEAKER_STATE_LABELS = {
    "online": _l("在线"),
    "offline": _l("离线"),
    "never_seen": _l("从未上线"),
    "disabled": _l("已停用"),
    "retired": _l("已退役"),
}
STATE_COLOURS = {"online": "#2e7d32", "offline": "#b71c1c", "never_seen": "#9e9e9e", "disabled": "#ef6c00"}
MAP_W, MAP_H, MAP_PAD = 900, 620, 30
UPLOAD_KEEP_S = 3600  # an import preview may be committed within this long


def _managers_only() -> None:
    if g.user.role not in ("admin", "operator"):
        raise forbidden("只有管理员和操作员可以管理区域、终端和用户。", "Only admins and operators manage the county.")


def _sync() -> None:
    session = db()
    session.commit()
    speaker_admin.sync_broker(session, platform())
    session.commit()


@console.route("/admin/regions", methods=["GET", "POST"])
@login_required
def admin_regions() -> str | BaseResponse:
    """The region tree, one level at a time: add a child, rename, retire."""
    _managers_only()
    session = db()
    error = None
    tree = regions.load_tree(session)
    scope = regions.user_scope(g.user)
    code = request.args.get("code") or scope or next((c for c, r in tree.items() if r.level == "county"), None)
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "create":
                region_admin.create(
                    session,
                    g.user,
                    code=request.form.get("code", ""),
                    name=request.form.get("name", ""),
                    level=request.form.get("level", ""),
                    parent_code=request.form.get("parent_code") or None,
                )
            elif action == "rename":
                region_admin.update(session, g.user, request.form.get("code", ""), name=request.form.get("name", ""))
            elif action == "retire":
                region_admin.retire(session, g.user, request.form.get("code", ""))
            _sync()
            return redirect(url_for("console.admin_regions", code=code))
        except BroadcastError as exc:
            session.rollback()
            error = message_of(exc)
        tree = regions.load_tree(session)
    current = tree.get(code or "")
    if current is not None and not regions.within(tree, current.code, scope) and scope is not None:
        current = tree.get(scope)
    children = sorted((r for r in tree.values() if r.parent_code == (current.code if current else None)), key=_code)
    path = [tree[c] for c in reversed(regions.ancestors(tree, current.code))] if current else []
    child_level = {"county": "township", "township": "village", "village": "grid"}.get(current.level if current else "")
    return render_template(
        "admin_regions.html",
        current=current,
        children=children,
        path=path,
        child_level=child_level if current else "county",
        counts=region_admin.counts(session),
        error=error,
    )


def _code(region: Region) -> str:
    return region.code


@console.route("/admin/speakers", methods=["GET", "POST"])
@login_required
def admin_speakers() -> str | BaseResponse:
    """Speakers, a page at a time, filtered by region and state; add one."""
    _managers_only()
    session = db()
    error = None
    if request.method == "POST":
        try:
            speaker = speaker_admin.create(session, g.user, request.form.to_dict())
            session.commit()
            return redirect(url_for("console.admin_speaker", speaker_id=speaker.id))
        except BroadcastError as exc:
            session.rollback()
            error = message_of(exc)
    try:
        page_no = max(int(request.args.get("page", "1")), 1)
    except ValueError:
        page_no = 1
    region = request.args.get("region") or None
    state = request.args.get("state") or None
    found = speaker_admin.list_page(session, g.user, region=region, state=state, page=page_no, per_page=100)
    return render_template(
        "admin_speakers.html",
        page=found,
        pages=max(math.ceil(found.total / found.per_page), 1),
        region=region or "",
        state=state or "",
        states=texts(SPEAKER_STATE_LABELS),
        row_states={s.id: speaker_admin.state_of(s) for s in found.items},
        error=error,
    )


@console.route("/admin/speakers/<speaker_id>", methods=["GET", "POST"])
@login_required
def admin_speaker(speaker_id: str) -> str | BaseResponse:
    """One speaker: edit, move, disable, retire, download its configuration, replace its box."""
    _managers_only()
    session = db()
    error = None
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "save":
                fields = {k: request.form.get(k, "") for k in ("name", "grid_code", "latitude", "longitude")}
                fields |= {k: request.form.get(k, "") for k in ("address", "notes", "sim_number")}
                fields["test_speaker"] = request.form.get("test_speaker") == "on"
                speaker_admin.update(session, g.user, speaker_id, fields)
            elif action in ("disable", "enable"):
                speaker_admin.set_enabled(session, g.user, speaker_id, action == "enable")
            elif action == "retire":
                speaker_admin.retire(session, g.user, speaker_id)
            elif action in ("provision", "replace"):
                config = (
                    speaker_admin.provision(session, platform(), g.user, speaker_id, state_root=DEVICE_STATE_ROOT)
                    if action == "provision"
                    else speaker_admin.replace(session, platform(), g.user, speaker_id, state_root=DEVICE_STATE_ROOT)
                )
                _sync()
                config.state_dir, config.cache_dir = DEVICE_STATE_ROOT / "state", DEVICE_STATE_ROOT / "cache"
                response = Response(config.to_json(), mimetype="application/json")
                response.headers["Content-Disposition"] = f'attachment; filename="{speaker_id}.json"'
                response.headers["Cache-Control"] = "no-store"
                return response
            _sync()
            return redirect(url_for("console.admin_speaker", speaker_id=speaker_id))
        except BroadcastError as exc:
            session.rollback()
            error = message_of(exc)
    speaker = speaker_admin.get(session, g.user, speaker_id)
    tree = regions.load_tree(session)
    path = " / ".join(tree[c].name for c in reversed(regions.ancestors(tree, speaker.grid_code)))
    return render_template(
        "admin_speaker.html", s=speaker_admin_json(speaker), path=path, states=texts(SPEAKER_STATE_LABELS), error=error
    )


def _upload_dir() -> Any:
    folder = platform().instance / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    stale = time.time() - UPLOAD_KEEP_S
    for old in folder.glob("*.bin"):  # previews never committed
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < stale:
                old.unlink()
    return folder


@console.route("/admin/import", methods=["GET", "POST"])
@login_required
def admin_import() -> str:
    """Upload a sheet, preview every row's problems, then commit it as one transaction."""
    _managers_only()
    session = db()
    report = None
    error = None
    token = ""
    kind = request.form.get("kind") or request.args.get("kind") or "speakers"
    if kind not in imports.COLUMNS:
        abort(404)
    if request.method == "POST":
        try:
            if request.form.get("action") == "commit":
                token = request.form.get("token", "")
                if not token.isalnum():
                    raise BroadcastError("expired", "预览已过期，请重新上传。", "The preview expired; upload again.")
                path = _upload_dir() / f"{g.user.id}-{token}.bin"
                if not path.exists():
                    raise BroadcastError("expired", "预览已过期，请重新上传。", "The preview expired; upload again.")
                report = imports.run_import(session, kind, path.read_bytes(), user=g.user)
                if report.applied:
                    _sync()
                    path.unlink(missing_ok=True)
                else:
                    session.rollback()
            else:
                upload = request.files.get("file")
                if upload is None or not upload.filename:
                    raise BroadcastError("file_required", "请选择要导入的表格文件。", "Choose a sheet to import.")
                data = upload.read()
                report = imports.run_import(session, kind, data, user=g.user, dry_run=True)
                session.rollback()
                if report.ok:
                    token = secrets.token_hex(16)
                    (_upload_dir() / f"{g.user.id}-{token}.bin").write_bytes(data)
        except BroadcastError as exc:
            session.rollback()
            error = message_of(exc)
    return render_template(
        "admin_import.html", kind=kind, report=report, token=token, error=error, columns=imports.COLUMNS
    )


def _projection(points: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """Equirectangular fit of lat/lon into the drawing: (min_lon, max_lat, scale_x, scale_y, offset)."""
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    span_lat = max(max(lats) - min(lats), 0.01)
    span_lon = max(max(lons) - min(lons), 0.01)
    squash = math.cos(math.radians((max(lats) + min(lats)) / 2))  # a degree of longitude is shorter
    scale = min((MAP_W - 2 * MAP_PAD) / (span_lon * squash), (MAP_H - 2 * MAP_PAD) / span_lat)
    return min(lons), max(lats), scale * squash, scale, MAP_PAD


@console.get("/admin/map")
@login_required
def admin_map() -> str:
    """Speakers with coordinates on a plain coordinate plot, coloured by state, township bounds outlined."""
    session = db()
    tree = regions.load_tree(session)
    scope = regions.user_scope(g.user)
    active = select(Speaker).where(Speaker.retired_at.is_(None)).order_by(Speaker.id)
    mine = [s for s in session.scalars(active) if regions.within(tree, s.grid_code, scope)]
    placed = [s for s in mine if s.latitude is not None and s.longitude is not None]
    dots: list[dict[str, Any]] = []
    boxes: list[dict[str, Any]] = []
    unplaced = len(mine) - len(placed)
    if placed:
        min_lon, max_lat, sx, sy, pad = _projection([(s.latitude, s.longitude) for s in placed])

        def xy(lat: float, lon: float) -> tuple[float, float]:
            return round(pad + (lon - min_lon) * sx, 1), round(pad + (max_lat - lat) * sy, 1)

        by_town: dict[str, list[tuple[float, float]]] = {}
        for s in placed:
            x, y = xy(s.latitude, s.longitude)
            state = speaker_admin.state_of(s)
            dots.append({"id": s.id, "name": s.name, "x": x, "y": y, "state": state, "fill": STATE_COLOURS[state]})
            town = next((c for c in regions.ancestors(tree, s.grid_code) if tree[c].level == "township"), None)
            if town:
                by_town.setdefault(town, []).append((x, y))
        for town, pts in sorted(by_town.items()):
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            boxes.append(
                {
                    "name": tree[town].name,
                    "x": min(xs) - 6,
                    "y": min(ys) - 6,
                    "w": max(xs) - min(xs) + 12,
                    "h": max(ys) - min(ys) + 12,
                }
            )
    return render_template(
        "admin_map.html",
        dots=dots,
        boxes=boxes,
        width=MAP_W,
        height=MAP_H,
        colours=STATE_COLOURS,
        states=texts(SPEAKER_STATE_LABELS),
        unplaced=unplaced,
        levels=texts(LEVEL_LABELS),
    )
