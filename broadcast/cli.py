"""The `broadcast` command: set up, run, administer and broadcast from the shell."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
from sqlalchemy import select

from broadcast.errors import BroadcastError, is_shaped
from broadcast.platform import Platform
from broadcast.settings import instance_path


def _platform(**overrides: object) -> Platform:
    return Platform.from_settings(instance_path(), {k: v for k, v in overrides.items() if v is not None})


def _fail(exc: BaseException) -> None:
    message = f"{exc.zh} / {exc.en}" if is_shaped(exc) else str(exc)  # type: ignore[attr-defined]
    click.echo(f"错误 / error: {message}", err=True)
    sys.exit(2)


class _Commands(click.Group):
    """Every command's known errors (any package's shaped error) end as one line and exit code 2."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a shaped error becomes `错误 / error: …`, anything else stays a traceback."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not is_shaped(exc):
                raise
            _fail(exc)


@click.group(cls=_Commands)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """village-broadcast (智慧广播平台): server and administration."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.option("--admin", default="admin", show_default=True, help="Name of the first admin.")
@click.option(
    "--admin-password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the first admin's password from this file instead of generating one.",
)
def init(admin: str, admin_password_file: Path | None) -> None:
    """Create the database, the signing key and the first admin (prints the password once)."""
    from broadcast.setup import initialize, password_banner

    platform = _platform()
    if platform.db.is_initialized():
        raise BroadcastError(
            "already_initialized",
            f"实例已初始化：{platform.instance}",
            f"Already initialized: {platform.instance}",
            kind="conflict",
        )
    given = admin_password_file.read_text().strip() if admin_password_file else None
    password = initialize(platform, admin, given)
    click.echo(f"实例已初始化 / instance initialized: {platform.instance}")
    if password:
        click.echo(password_banner(admin, password))
    elif admin_password_file:
        click.echo(f"管理员 {admin} 已创建 / admin {admin!r} created with the given password")


@main.command("settings")
def settings_doc() -> None:
    """Print every setting with its default and meaning (the source of docs/settings.md)."""
    from broadcast.settings import markdown

    click.echo(markdown(), nl=False)


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "operator", "village_head", "viewer"]), required=True)
@click.option("--region", "region_code", help="Region code the user is bound to (operators, village heads).")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def users_create(name: str, role: str, region_code: str | None, password_file: Path | None) -> None:
    """Create a user; prints a generated password unless --password-file is given."""
    from broadcast.services import accounts

    platform = _platform()
    password = password_file.read_text().strip() if password_file else accounts.generate_password()
    with platform.db.transaction() as session:
        accounts.create_user(session, name, password, role, region_code, actor="cli")
    click.echo(f"用户已创建 / user created: {name} ({role}{', ' + region_code if region_code else ''})")
    if not password_file:
        click.echo(f"密码 / password: {password}")


@main.group()
def tokens() -> None:
    """Manage API tokens."""


@tokens.command("create")
@click.argument("user")
def tokens_create(user: str) -> None:
    """Create an API token for USER; the token is printed alone on the last line."""
    from broadcast.services import accounts

    platform = _platform()
    with platform.db.transaction() as session:
        token = accounts.create_token(session, accounts.find_user(session, user), actor="cli")
    click.echo(f"API token for {user} (shown once):")
    click.echo(token)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Web server address.")
@click.option("--port", default=8080, show_default=True, type=int, help="Web server port.")
@click.option("--mqtt-port", type=int, help="Embedded broker port (default: setting MQTT_PORT, 1884).")
@click.option("--demo", is_flag=True, help="Seed the demo county and simulate its speakers on this machine.")
@click.option("--threads", default=16, show_default=True, type=int, help="Web server threads.")
def run(host: str, port: int, mqtt_port: int | None, demo: bool, threads: int) -> None:
    """Run everything on one machine: embedded broker, worker, web server (and the demo fleet)."""
    from broadcast.demo import prepare_settings
    from broadcast.runner import run_all

    if demo and prepare_settings(instance_path()):
        click.echo("演示实例不设静默时段（可在 instance/settings.toml 中设置）/ demo instance: no quiet hours")
    platform = _platform(MQTT_PORT=mqtt_port)
    run_all(platform, host=host, port=port, demo=demo, threads=threads, echo=click.echo)


@main.command()
def worker() -> None:
    """Run the one worker process of a deployment (receipts, sweeps); web workers run under gunicorn."""
    from broadcast.runner import run_worker

    run_worker(_platform())


@main.command()
@click.argument("text")
@click.option("--to", "targets", required=True, help="Region codes and/or speaker ids, comma-separated.")
@click.option(
    "--priority",
    default="normal",
    show_default=True,
    type=click.Choice(["emergency", "urgent", "normal", "background"]),
)
@click.option("--user", "username", help="Act as this user (default: the first admin).")
@click.option("--wait", is_flag=True, help="Wait until every delivery ends and print the counts.")
@click.option("--timeout", default=300, show_default=True, type=int, help="Longest wait, seconds.")
def say(text: str, targets: str, priority: str, username: str | None, wait: bool, timeout: int) -> None:
    """Broadcast TEXT now to the given regions/speakers; prints the broadcast id."""
    from broadcast.models import Broadcast, User
    from broadcast.services import accounts, broadcasts, clips
    from broadcast.services.sending import send_broadcast

    platform = _platform()
    with platform.db.transaction() as session:
        if username:
            user = accounts.find_user(session, username)
        else:
            user = session.scalars(select(User).where(User.role == "admin").order_by(User.id)).first()
            if user is None:
                raise BroadcastError("no_admin", "请先运行 broadcast init。", "Run `broadcast init` first.")
        clip = clips.from_text(session, platform.media_store, platform.media, text, user=user)
        item = broadcasts.create(
            session,
            user,
            platform.rules,
            clip_id=clip.id,
            targets=[t.strip() for t in targets.split(",") if t.strip()],
            priority=priority,
            source="cli",
        )
        send_broadcast(session, platform, item)
        broadcast_id = item.id
    click.echo(broadcast_id)
    if not wait:
        return
    deadline = time.time() + timeout
    while True:
        with platform.db.transaction() as session:
            item = session.get(Broadcast, broadcast_id)
            assert item is not None
            status = broadcasts.refresh_status(session, item)
            tally = broadcasts.counts(session, broadcast_id)
        if status == "done" or time.time() > deadline:
            break
        time.sleep(0.5)
    click.echo(" ".join(f"{state}={n}" for state, n in sorted(tally.items())))
    platform.close()
    if status != "done":
        sys.exit(1)


@main.group()
def speakers() -> None:
    """Manage speakers."""


@speakers.command("provision")
@click.argument("speaker_id")
@click.option(
    "--state-dir",
    default="/var/lib/speaker-agent",
    show_default=True,
    help="Where the agent keeps its state and cache on the device.",
)
def speakers_provision(speaker_id: str, state_dir: str) -> None:
    """Print everything a new speaker needs (id, broker URL, its own credentials, the server key) as JSON.

    A new broker password is made each time (the old one stops working); only its hash is kept.
    """
    from broadcast.services import provisioning

    platform = _platform()
    with platform.db.transaction() as session:
        config = provisioning.provision(session, platform, speaker_id, state_root=Path(state_dir))
        config.state_dir = Path(state_dir) / "state"
        config.cache_dir = Path(state_dir) / "cache"
        if platform.embedded_broker:
            provisioning.write_broker_files(session, platform)
    click.echo(config.to_json())


@speakers.command("broker-files")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def speakers_broker_files(folder: Path) -> None:
    """Write Mosquitto `passwd` and `acl` files for the server account and every provisioned speaker.

    Point Mosquitto at them (password_file, acl_file, allow_anonymous false) and send it SIGHUP after changes.
    """
    from broadcast.services import provisioning

    platform = _platform()
    user, password = platform.broker_account()
    if not user or not password:
        _fail(
            BroadcastError(
                "no_server_account",
                "请先设置 BROADCAST_MQTT_USERNAME 和 BROADCAST_MQTT_PASSWORD。",
                "Set BROADCAST_MQTT_USERNAME and BROADCAST_MQTT_PASSWORD first.",
            )
        )
    with platform.db.transaction() as session:
        provisioning.write_broker_files(session, platform, folder)
    click.echo(f"wrote {folder / 'passwd'} and {folder / 'acl'}")


@main.group()
def keys() -> None:
    """Manage the server's command-signing key."""


@keys.command("rotate")
@click.option(
    "--retire-after-days", default=7, show_default=True, type=int, help="How long speakers still accept the old key."
)
def keys_rotate(retire_after_days: int) -> None:
    """Make a new signing key, announce it to every speaker under the current key, then sign with it."""
    from broadcast.services import keys as key_service

    platform = _platform()
    try:
        new_id = key_service.rotate(platform, retire_after_s=retire_after_days * 86400, actor="cli")
    finally:
        platform.close()
    click.echo(f"新密钥已启用 / new signing key in use: {new_id}")
