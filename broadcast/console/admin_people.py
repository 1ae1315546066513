"""Console pages for people: the users page (admins, operators in their region) and changing your own password."""

from __future__ import annotations

import logging

from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_user
from werkzeug.wrappers import Response as BaseResponse

from broadcast.console.views import console
from broadcast.errors import BroadcastError
from broadcast.i18n import message_of, texts
from broadcast.models import ROLES
from broadcast.services import regions, user_admin
from broadcast.web.context import db, platform
from broadcast.web.security import login_required

logger = logging.getLogger(__name__)
ROLE_LABELS = {
    "admin": _l("管理员"),
    "operator": _l("操作员"),
    "village_head": _l("村负责人"),
    "viewer": _l("只读"),
    "warning_source": _l("预警信息源"),
}  # user_admin.ROLE_ZH, translatable here
LANGUAGE_NAMES = {"zh": "中文", "en": "English"}  # each language named in itself, as on the header's buttons


def _region_choices() -> list[tuple[str, str]]:
    """Regions a user may be bound to (counties, townships and villages the actor sees)."""
    shown = regions.visible_regions(db(), g.user)
    return [(r.code, f"{r.name} ({r.code})") for r in shown if r.level != "grid"]


@console.route("/admin/users", methods=["GET", "POST"])
@login_required
def admin_users() -> str:
    """Users the actor manages; create one (its password is shown once)."""
    s = db()
    error = None
    shown_once = None
    if request.method == "POST":
        try:
            user, password = user_admin.create(
                s,
                g.user,
                request.form.get("username", "").strip(),
                request.form.get("role", ""),
                request.form.get("region_code") or None,
            )
            s.commit()
            shown_once = (user.username, password)
        except BroadcastError as exc:
            s.rollback()
            error = message_of(exc)
    users = user_admin.list_users(s, g.user)
    failures = {u.username: user_admin.failed_logins(s, u.username) for u in users}
    return render_template(
        "admin_users.html",
        users=users,
        failures=failures,
        roles=ROLES,
        role_labels=texts(ROLE_LABELS),
        region_choices=_region_choices(),
        shown_once=shown_once,
        error=error,
    )


@console.route("/admin/users/<username>", methods=["GET", "POST"])
@login_required
def admin_user(username: str) -> str:
    """One user: role and region, console language, reset password, disable, unlock, API tokens."""
    s = db()
    error = None
    shown_once = None
    user = user_admin.find(s, g.user, username)
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "role":
                user_admin.set_role(
                    s, g.user, username, request.form.get("role", ""), request.form.get("region_code") or None
                )
            elif action == "language":
                user_admin.set_language(s, g.user, username, request.form.get("language") or None)
            elif action in ("disable", "enable"):
                user_admin.set_active(s, g.user, username, action == "enable")
            elif action == "unlock":
                user_admin.unlock(s, g.user, username)
            elif action == "reset":
                shown_once = (_("新的密码（只显示这一次）："), user_admin.reset_password(s, g.user, username))
            elif action == "token":
                shown_once = (_("新的 API 令牌（只显示这一次）："), user_admin.create_token(s, g.user, username))
            elif action == "revoke":
                user_admin.revoke_token(s, g.user, int(request.form.get("token_id", "0") or 0))
            s.commit()
        except (BroadcastError, ValueError) as exc:
            s.rollback()
            error = message_of(exc) if isinstance(exc, BroadcastError) else _("参数无效。")
        user = user_admin.find(s, g.user, username)
    return render_template(
        "admin_user.html",
        user=user,
        tokens=user_admin.list_tokens(s, g.user, username),
        failures=user_admin.failed_logins(s, username),
        roles=ROLES,
        role_labels=texts(ROLE_LABELS),
        region_choices=_region_choices(),
        languages=_language_choices(),
        shown_once=shown_once,
        error=error,
    )


def _language_choices() -> list[tuple[str, str]]:
    """The language select: the deployment's default, then each language named in itself."""
    default = platform().settings["LANGUAGE"]
    return [("", _("默认（部署设置：%(name)s）", name=LANGUAGE_NAMES.get(default, default))), *LANGUAGE_NAMES.items()]


@console.route("/account/password", methods=["GET", "POST"])
@login_required
def own_password() -> str | BaseResponse:
    """Change your own password (every other session of yours ends)."""
    error = None
    if request.method == "POST":
        s = db()
        try:
            if request.form.get("new") != request.form.get("again"):
                raise BroadcastError("mismatch", "两次输入的新密码不一致。", "The new passwords differ.")
            user_admin.change_own_password(s, g.user, request.form.get("old", ""), request.form.get("new", ""))
            s.commit()
            login_user(g.user)  # the new password ended every session; this one carries on
            return redirect(url_for("console.own_password", done=1))
        except BroadcastError as exc:
            s.rollback()
            error = message_of(exc)
    return render_template("admin_password.html", error=error, done=request.args.get("done") == "1")
