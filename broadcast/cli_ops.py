"""Operations commands: schema upgrade and status, backup and restore, audit verification, secrets."""

from __future__ import annotations

from pathlib import Path

import click

from broadcast.cli import _platform


@click.group("db")
def db_group() -> None:
    """Database schema: upgrade and status."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema up to this code's version (safe to run again; data is kept)."""
    from broadcast.db import schema_head

    platform = _platform()  # closed when the command ends
    before = platform.db.revision()
    platform.db.upgrade()
    after = platform.db.revision()
    if before == after:
        click.echo(f"数据库结构已是最新 / schema already current: {after}")
    else:
        click.echo(f"数据库结构已升级 / schema upgraded: {before or '(empty)'} → {after}")
    assert after == schema_head()


@db_group.command("status")
def db_status() -> None:
    """Print the schema version of the database and of this code; exit 1 when they differ."""
    from broadcast.db import schema_head

    platform = _platform()  # closed when the command ends
    current, head = platform.db.revision(), schema_head()
    click.echo(f"database {current or '(empty)'}, code {head}")
    if current != head:
        raise SystemExit(1)


@click.command("backup")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(archive: Path) -> None:
    """Write a backup of this running instance (database, media, keys, settings) to ARCHIVE (.tar.gz)."""
    from broadcast.backup import backup

    platform = _platform()  # closed when the command ends
    manifest = backup(platform, archive)
    click.echo(f"备份完成 / backup written: {archive} (schema {manifest['schema']}, {archive.stat().st_size} bytes)")


@click.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
def restore_command(archive: Path) -> None:
    """Restore ARCHIVE into this stopped instance; commands then resume above any sequence speakers have seen."""
    from broadcast.backup import restore

    platform = _platform()  # closed when the command ends
    manifest = restore(platform, archive)
    click.echo(f"恢复完成 / restored: {archive}; commands resume above sequence {manifest['sequence_base']}")


@click.group("audit")
def audit_group() -> None:
    """The audit trail: verify its chain."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Walk the audit chain; exit 1 naming the first entry edited, deleted or inserted behind the app's back."""
    from broadcast.services import audit_chain

    platform = _platform()  # closed when the command ends
    with platform.db.transaction() as session:
        verdict = audit_chain.verify(session, audit_chain.derive_key(platform.settings["SECRET_KEY"]))
    legacy = (
        f"（另有 {verdict.legacy} 条链前记录 / plus {verdict.legacy} entries from before the chain）"
        if verdict.legacy
        else ""
    )
    if verdict.ok:
        click.echo(f"审计链完整 / audit chain whole: {verdict.entries} entries{legacy}")
        return
    where = f"entry id {verdict.broken_id}" if verdict.broken_id is not None else "the chain's end"
    click.echo(f"审计链被篡改 / audit chain broken at {where}: {verdict.problem}", err=True)
    raise SystemExit(1)


@click.command("set-password")
@click.argument("name")
@click.option(
    "--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Read it from here."
)
def users_set_password(name: str, password_file: Path | None) -> None:
    """Set NAME's password (asked twice without echo, or read from --password-file); their sessions end."""
    from broadcast.services import user_admin

    if password_file is not None:
        password = password_file.read_text().strip()
    else:
        password = click.prompt("新密码 / new password", hide_input=True, confirmation_prompt=True)
    platform = _platform()  # closed when the command ends
    with platform.db.transaction() as session:
        user_admin.set_password(session, None, name, password)
    click.echo(f"密码已更改 / password changed: {name}")


@click.command("list")
@click.argument("user")
def tokens_list(user: str) -> None:
    """List USER's API tokens: id, prefix, created, last used, revoked."""
    from broadcast.services import user_admin

    platform = _platform()  # closed when the command ends
    with platform.db.transaction() as session:
        rows = [
            (t.id, t.prefix, t.created_at, t.last_used_at, "yes" if t.revoked else "no")
            for t in user_admin.list_tokens(session, None, user)
        ]
    click.echo("id\tprefix\tcreated\tlast_used\trevoked")
    for row in rows:
        click.echo("\t".join("-" if v is None else str(v) for v in row))


@click.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int) -> None:
    """Revoke the API token with this id (from `broadcast tokens list`); it stops working at once."""
    from broadcast.services import user_admin

    platform = _platform()  # closed when the command ends
    with platform.db.transaction() as session:
        user_admin.revoke_token(session, None, token_id)
    click.echo(f"令牌已吊销 / token revoked: {token_id}")
