"""REST API for managing the county under /api/v1: regions, speakers, imports/exports, users and tokens."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from broadcast.errors import BroadcastError, forbidden
from broadcast.models import ApiToken, Speaker, User
from broadcast.services import imports, region_admin, speaker_admin, user_admin
from broadcast.services.spreadsheets import XLSX_MIME
from broadcast.web import admin_schemas as schemas
from broadcast.web.context import db, platform
from broadcast.web.openapi import declare
from broadcast.web.security import api_auth, csrf
from broadcast.web.views import region_json, speaker_json

logger = logging.getLogger(__name__)
admin_api = Blueprint("admin_api", __name__, url_prefix="/api/v1")
csrf.exempt(admin_api)
DEVICE_STATE_ROOT = Path("/var/lib/speaker-agent")  # where the agent keeps state on the box (a device path)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BroadcastError(
            "invalid_json", "请求体必须是 JSON 对象。", "The request body must be a JSON object.", kind="bad_request"
        )
    return data


def int_arg(name: str, default: int) -> int:
    """An integer query argument, or a clear error."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BroadcastError("invalid_argument", f"参数 {name} 必须是整数。", f"{name} must be an integer.") from None


def speaker_admin_json(speaker: Speaker) -> dict[str, Any]:
    """A speaker with its inventory fields and its state, as the management API shows it."""
    return {
        **speaker_json(speaker),
        "grid_code": speaker.grid_code,
        "address": speaker.address,
        "notes": speaker.notes,
        "sim_number": speaker.sim_number,
        "test_speaker": speaker.test_speaker,
        "enabled": speaker.enabled,
        "provisioned": speaker.broker_password_hash is not None,
        "retired_at": speaker.retired_at.isoformat() if speaker.retired_at else None,
        "state": speaker_admin.state_of(speaker),
    }


def user_json(user: User) -> dict[str, Any]:
    """A user as the API shows it (never the password hash)."""
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "region_code": user.region_code,
        "display_name": user.display_name,
        "active": user.active,
        "failed_logins": user_admin.failed_logins(db(), user.username),
    }


def token_json(token: ApiToken) -> dict[str, Any]:
    """A token's public part."""
    return {
        "id": token.id,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked": token.revoked,
    }


def _commit_and_sync() -> None:
    """Commit, then bring the broker's accounts and ACL up to date with what was committed."""
    session = db()
    session.commit()
    speaker_admin.sync_broker(session, platform())
    session.commit()


# Regions


@admin_api.post("/regions")
@api_auth
@declare(body=schemas.REGION_CREATE, status=201)
def create_region() -> tuple[Response, int]:
    """Add a region: {"code", "name", "level", "parent_code"}."""
    data = _body()
    region = region_admin.create(
        db(),
        g.user,
        code=str(data.get("code") or ""),
        name=str(data.get("name") or ""),
        level=str(data.get("level") or ""),
        parent_code=data.get("parent_code"),
    )
    db().commit()
    return jsonify(region_json(region)), 201


@admin_api.patch("/regions/<code>")
@api_auth
@declare(body=schemas.REGION_UPDATE)
def update_region(code: str) -> Response:
    """Rename and/or move a region: {"name"?, "parent_code"?}."""
    data = _body()
    region = region_admin.update(db(), g.user, code, name=data.get("name"), parent_code=data.get("parent_code"))
    _commit_and_sync()
    return jsonify(region_json(region))


@admin_api.delete("/regions/<code>")
@api_auth
@declare(status=204)
def retire_region(code: str) -> tuple[str, int]:
    """Retire an unused region (refused with the list of what still uses it)."""
    region_admin.retire(db(), g.user, code)
    db().commit()
    return "", 204


# Speakers


@admin_api.post("/speakers")
@api_auth
@declare(body=schemas.SPEAKER_CREATE, status=201)
def create_speaker() -> tuple[Response, int]:
    """Add a speaker: {"id", "name", "grid_code", "latitude"?, "longitude"?, "address"?, "notes"?, ...}."""
    speaker = speaker_admin.create(db(), g.user, _body())
    db().commit()
    return jsonify(speaker_admin_json(speaker)), 201


@admin_api.get("/speakers/<speaker_id>")
@api_auth
def get_speaker(speaker_id: str) -> Response:
    """One speaker with its inventory and state."""
    return jsonify(speaker_admin_json(speaker_admin.get(db(), g.user, speaker_id)))


@admin_api.patch("/speakers/<speaker_id>")
@api_auth
@declare(body=schemas.SPEAKER_UPDATE)
def update_speaker(speaker_id: str) -> Response:
    """Edit a speaker; a new grid_code moves it (its broker topics follow); "enabled": false disables it."""
    data = _body()
    session = db()
    speaker, _moved = speaker_admin.update(session, g.user, speaker_id, data)
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise BroadcastError("invalid_enabled", "enabled 必须是 true 或 false。", "enabled must be true or false.")
        speaker = speaker_admin.set_enabled(session, g.user, speaker_id, data["enabled"])
    _commit_and_sync()
    return jsonify(speaker_admin_json(speaker))


@admin_api.delete("/speakers/<speaker_id>")
@api_auth
def retire_speaker(speaker_id: str) -> Response:
    """Retire a speaker: no more broadcasts, broker account removed, history kept."""
    speaker = speaker_admin.retire(db(), g.user, speaker_id)
    _commit_and_sync()
    return jsonify(speaker_admin_json(speaker))


def _config_download(config: Any, speaker_id: str) -> Response:
    config.state_dir = DEVICE_STATE_ROOT / "state"
    config.cache_dir = DEVICE_STATE_ROOT / "cache"
    response = Response(config.to_json(), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{speaker_id}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@admin_api.post("/speakers/<speaker_id>/provision")
@api_auth
def provision_speaker(speaker_id: str) -> Response:
    """The speaker's agent configuration with a new broker password, shown once (the old one stops working)."""
    config = speaker_admin.provision(db(), platform(), g.user, speaker_id, state_root=DEVICE_STATE_ROOT)
    _commit_and_sync()
    return _config_download(config, speaker_id)


@admin_api.post("/speakers/<speaker_id>/replace")
@api_auth
def replace_speaker(speaker_id: str) -> Response:
    """A new box takes this speaker's identity and history: its configuration, shown once; the old box is shut out."""
    data = request.get_json(silent=True) or {}
    config = speaker_admin.replace(
        db(), platform(), g.user, speaker_id, state_root=DEVICE_STATE_ROOT, sim_number=data.get("sim_number")
    )
    _commit_and_sync()
    return _config_download(config, speaker_id)


# Imports and exports


def _kind(kind: str) -> str:
    if kind not in imports.COLUMNS:
        raise BroadcastError("not_found", f"未知的类型：{kind}", f"Unknown kind: {kind}", kind="not_found")
    return kind


@admin_api.post("/imports/<kind>")
@api_auth
@declare(form=schemas.IMPORT_FORM, query=schemas.IMPORT_QUERY)
def import_sheet(kind: str) -> Response:
    """Import an uploaded .xlsx/.csv `file`: the whole file or nothing (422); ?dry_run=1 only reports (200)."""
    upload = request.files.get("file")
    if upload is None:
        raise BroadcastError("file_required", "请选择要导入的表格文件。", "Attach the sheet as `file`.")
    dry_run = request.args.get("dry_run", "") in ("1", "true", "yes")
    session = db()
    report = imports.run_import(session, _kind(kind), upload.read(), user=g.user, dry_run=dry_run)
    if report.problems and not dry_run:
        session.rollback()
        raise BroadcastError(
            "import_rejected",
            f"表格有 {len(report.problems)} 个问题，未导入任何一行。",
            f"The sheet has {len(report.problems)} problems; nothing was imported.",
            report=report.to_json(),
        )
    if dry_run:
        session.rollback()
    else:
        _commit_and_sync()
    return jsonify(report.to_json())


def _sheet(data: bytes, name: str, fmt: str) -> Response:
    mimetype = "text/csv" if fmt == "csv" else XLSX_MIME
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@admin_api.get("/exports/<kind>.<fmt>")
@api_auth
def export_sheet(kind: str, fmt: str) -> Response:
    """Every region or speaker the user may see, in the columns the import reads (.xlsx or .csv)."""
    if fmt not in ("xlsx", "csv"):
        raise BroadcastError("not_found", f"不支持的格式：{fmt}", f"Unknown format: {fmt}", kind="not_found")
    return _sheet(imports.export_file(db(), _kind(kind), g.user, fmt=fmt), kind, fmt)


@admin_api.get("/templates/<kind>.<fmt>")
@api_auth
def template_sheet(kind: str, fmt: str) -> Response:
    """An empty sheet with the import's headers."""
    if fmt not in ("xlsx", "csv"):
        raise BroadcastError("not_found", f"不支持的格式：{fmt}", f"Unknown format: {fmt}", kind="not_found")
    return _sheet(imports.template_file(_kind(kind), fmt=fmt), f"{kind}-template", fmt)


# Users and tokens


@admin_api.get("/users")
@api_auth
def list_users() -> Response:
    """Users the caller manages (admins: everyone; operators: their region's)."""
    return jsonify({"items": [user_json(u) for u in user_admin.list_users(db(), g.user)]})


@admin_api.post("/users")
@api_auth
@declare(body=schemas.USER_CREATE, status=201)
def create_user() -> tuple[Response, int]:
    """Create a user: {"username", "role", "region_code"?}; the generated password is returned once."""
    data = _body()
    user, password = user_admin.create(
        db(), g.user, str(data.get("username") or ""), str(data.get("role") or ""), data.get("region_code")
    )
    db().commit()
    return jsonify({**user_json(user), "password": password}), 201


@admin_api.patch("/users/<username>")
@api_auth
@declare(body=schemas.USER_UPDATE)
def update_user(username: str) -> Response:
    """Change role and region ({"role", "region_code"}) and/or {"active": bool}."""
    data = _body()
    session = db()
    user = user_admin.find(session, g.user, username)
    if "role" in data or "region_code" in data:
        role = str(data.get("role", user.role))
        user = user_admin.set_role(session, g.user, username, role, data.get("region_code", user.region_code))
    if "active" in data:
        if not isinstance(data["active"], bool):
            raise BroadcastError("invalid_active", "active 必须是 true 或 false。", "active must be true or false.")
        user = user_admin.set_active(session, g.user, username, data["active"])
    session.commit()
    return jsonify(user_json(user))


@admin_api.post("/users/<username>/reset-password")
@api_auth
def reset_password(username: str) -> Response:
    """A new generated password, returned once."""
    password = user_admin.reset_password(db(), g.user, username)
    db().commit()
    return jsonify({"username": username, "password": password})


@admin_api.post("/users/<username>/unlock")
@api_auth
def unlock_user(username: str) -> Response:
    """Clear a locked-out user's failed logins."""
    cleared = user_admin.unlock(db(), g.user, username)
    db().commit()
    return jsonify({"username": username, "cleared": cleared})


@admin_api.get("/users/<username>/tokens")
@api_auth
def list_tokens(username: str) -> Response:
    """A user's API tokens (never the token itself)."""
    return jsonify({"items": [token_json(t) for t in user_admin.list_tokens(db(), g.user, username)]})


@admin_api.post("/users/<username>/tokens")
@api_auth
@declare(status=201)
def create_token(username: str) -> tuple[Response, int]:
    """A new API token for the user, returned once."""
    token = user_admin.create_token(db(), g.user, username)
    db().commit()
    return jsonify({"token": token}), 201


@admin_api.delete("/tokens/<int:token_id>")
@api_auth
def revoke_token(token_id: int) -> Response:
    """Revoke a token; it stops working at once."""
    token = user_admin.revoke_token(db(), g.user, token_id)
    db().commit()
    return jsonify(token_json(token))


@admin_api.post("/me/password")
@api_auth
@declare(body=schemas.PASSWORD_CHANGE)
def change_password() -> Response:
    """Change your own password: {"old", "new"}."""
    data = _body()
    if g.user is None:
        raise forbidden()
    user_admin.change_own_password(db(), g.user, str(data.get("old") or ""), str(data.get("new") or ""))
    db().commit()
    return jsonify({"ok": True})
