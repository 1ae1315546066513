"""`broadcast import`, `broadcast export` and the `broadcast users` administration commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from broadcast.cli import _platform, users
from broadcast.models import ROLES

logger = logging.getLogger(__name__)

KINDS = click.Choice(["regions", "speakers"])


@click.group("import")
def import_group() -> None:
    """Import regions or speakers from an .xlsx or .csv sheet (all rows or none)."""


def _import(kind: str, file: Path, dry_run: bool) -> None:
    from broadcast.services import imports, speaker_admin

    platform = _platform()
    data = file.read_bytes()
    with platform.db.transaction() as session:
        report = imports.run_import(session, kind, data, user=None, dry_run=dry_run)
        if report.applied and (report.created or report.updated):
            speaker_admin.sync_broker(session, platform)
    if report.problems:
        for problem in report.problems:
            click.echo(problem.line(), err=True)
        click.echo(
            f"未导入：{len(report.problems)} 个问题，文件中任何一行都没有写入 / "
            f"nothing imported: {len(report.problems)} problems",
            err=True,
        )
        sys.exit(1)
    prefix = "预演（未写入）/ dry run (nothing written): " if dry_run else ""
    click.echo(prefix + report.summary())


@import_group.command("regions")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and report only; write nothing.")
def import_regions(file: Path, dry_run: bool) -> None:
    """Import regions (区划代码, 名称, 上级代码, 层级); exit 0 only when the whole file applies."""
    _import("regions", file, dry_run)


@import_group.command("speakers")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check and report only; write nothing.")
def import_speakers(file: Path, dry_run: bool) -> None:
    """Import speakers (终端编号, 名称, 网格代码, 纬度, 经度, 地址, 演练终端); exit 0 only when all apply."""
    _import("speakers", file, dry_run)


@click.command("export")
@click.argument("kind", type=KINDS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--template", is_flag=True, help="Write an empty sheet with the headers only.")
def export_command(kind: str, file: Path, template: bool) -> None:
    """Export every region or speaker to FILE (.xlsx, or .csv by its name), in the columns import reads."""
    from broadcast.services import imports

    fmt = "csv" if file.suffix.lower() == ".csv" else "xlsx"
    if template:
        data = imports.template_file(kind, fmt=fmt)
    else:
        with _platform().db.transaction() as session:
            data = imports.export_file(session, kind, None, fmt=fmt)
    file.write_bytes(data)
    click.echo(f"已写入 / wrote {file}")


@users.command("list")
def users_list() -> None:
    """List users: name, role, region, active, failed logins."""
    from broadcast.services import user_admin

    with _platform().db.transaction() as session:
        for user in user_admin.list_users(session, None):
            state = "active" if user.active else "disabled"
            failures = user_admin.failed_logins(session, user.username)
            click.echo(f"{user.username}\t{user.role}\t{user.region_code or '-'}\t{state}\tfailed={failures}")


@users.command("set-role")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--region", "region_code", help="Region code the user is bound to (operators, village heads).")
def users_set_role(name: str, role: str, region_code: str | None) -> None:
    """Change a user's role and region."""
    from broadcast.services import user_admin

    with _platform().db.transaction() as session:
        user_admin.set_role(session, None, name, role, region_code)
    click.echo(f"已修改 / changed: {name} ({role}{', ' + region_code if region_code else ''})")


@users.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
def users_disable(name: str, enable: bool) -> None:
    """Disable a user (sessions and tokens stop working), or --enable them again."""
    from broadcast.services import user_admin

    with _platform().db.transaction() as session:
        user_admin.set_active(session, None, name, enable)
    click.echo(f"{'已启用 / enabled' if enable else '已停用 / disabled'}: {name}")


@users.command("unlock")
@click.argument("name")
def users_unlock(name: str) -> None:
    """Clear a locked-out user's failed logins."""
    from broadcast.services import user_admin

    with _platform().db.transaction() as session:
        cleared = user_admin.unlock(session, None, name)
    click.echo(f"已解锁 / unlocked: {name} ({cleared})")


@users.command("reset-password")
@click.argument("name")
def users_reset_password(name: str) -> None:
    """Give a user a new password, printed once on the last line."""
    from broadcast.services import user_admin

    with _platform().db.transaction() as session:
        password = user_admin.reset_password(session, None, name)
    click.echo(f"新密码（只显示一次）/ new password for {name} (shown once):")
    click.echo(password)
