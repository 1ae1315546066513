"""The `broadcast` command: set up, run, administer and broadcast from the shell."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from sqlalchemy import select

from broadcast.errors import BroadcastError, is_shaped
from broadcast.models import ROLES
from broadcast.platform import Platform
from broadcast.settings import instance_path


def _platform(**overrides: object) -> Platform:
    """This instance's platform, closed (broker link, database pool) when the command ends."""
    platform = Platform.from_settings(instance_path(), {k: v for k, v in overrides.items() if v is not None})
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(platform.close)
    return platform


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
    from broadcast.logs import configure
    from broadcast.settings import load_settings

    configure(load_settings(instance_path()), verbose=verbose)


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
@click.option("--role", type=click.Choice(ROLES), required=True)
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
    try:
        run_all(platform, host=host, port=port, demo=demo, threads=threads, echo=click.echo)
    except BroadcastError as exc:
        if exc.code != "already_running":
            raise
        click.echo(f"错误 / error: {exc.zh} / {exc.en}", err=True)
        sys.exit(1)  # not a usage error: another server runs on this instance


@main.command()
def worker() -> None:
    """Run the one worker process of a deployment (receipts, sweeps); web workers run under gunicorn."""
    from broadcast.runner import run_worker

    platform = _platform()
    platform.db.require_current()
    run_worker(platform)


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
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Longest wait, seconds (default: until the broadcast expires, plus a minute).",
)
def say(text: str, targets: str, priority: str, username: str | None, wait: bool, timeout: float | None) -> None:
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
        broadcast_id, expires_at = item.id, item.expires_at
    click.echo(broadcast_id)
    if not wait:
        return
    # Every delivery ends by the broadcast's expiry (the worker's sweep marks the rest missed).
    deadline = time.time() + timeout if timeout is not None else expires_at + WAIT_MARGIN_S
    while True:
        with platform.db.transaction() as session:
            item = session.get(Broadcast, broadcast_id)
            assert item is not None
            status = broadcasts.refresh_status(session, item)
            tally = broadcasts.counts(session, broadcast_id)
        if status == "done" or time.time() > deadline:
            break
        time.sleep(0.5)
    platform.close()
    if status != "done":
        click.echo(f"等待超时，播发尚未结束 / timed out before every delivery ended: {_in_words(tally)}", err=True)
    click.echo(_in_words(tally))
    click.echo(" ".join(f"{state}={n}" for state, n in sorted(tally.items())))
    if status != "done":
        sys.exit(1)


WAIT_MARGIN_S = 60.0
_WORDS = (
    ("finished", "已播完"),
    ("failed", "失败"),
    ("missed", "错过"),
    ("rejected", "拒收"),
    ("preempted", "被打断"),
)
_PENDING = ("queued", "sent", "acknowledged", "playing")


def _in_words(tally: dict[str, int]) -> str:
    """Delivery counts in Chinese words, e.g. 已播完 12，失败 0，错过 0，拒收 0."""
    parts = [f"{word} {tally.get(state, 0)}" for state, word in _WORDS if state != "preempted" or tally.get(state)]
    pending = sum(tally.get(state, 0) for state in _PENDING)
    if pending:
        parts.append(f"未结束 {pending}")
    return "，".join(parts)


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
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM CA certificate the speaker verifies an mqtts:// broker with (default: setting SPEAKER_CA_FILE).",
)
def speakers_provision(speaker_id: str, state_dir: str, ca_file: Path | None) -> None:
    """Print everything a new speaker needs (id, broker URL, its own credentials, the server key) as JSON.

    A new broker password is made each time (the old one stops working); only its hash is kept. The broker
    files are rewritten (embedded broker, and MOSQUITTO_DIR when set): reload Mosquitto afterwards.
    """
    from broadcast.services import provisioning

    platform = _platform()
    try:
        with platform.db.transaction() as session:
            config = provisioning.provision(session, platform, speaker_id, state_root=Path(state_dir), ca_file=ca_file)
            config.state_dir = Path(state_dir) / "state"
            config.cache_dir = Path(state_dir) / "cache"
            written = provisioning.sync_broker_files(session, platform)
    finally:
        platform.close()
    click.echo(config.to_json())
    for folder in written:
        if folder != platform.broker_dir:
            click.echo(f"已更新 / rewrote {folder}: 请重新加载 Mosquitto / now reload Mosquitto", err=True)


@speakers.command("broker-files")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
def speakers_broker_files(folder: Path | None) -> None:
    """Write the Mosquitto configuration, passwd and acl files into FOLDER (default: setting MOSQUITTO_DIR).

    Run `mosquitto -c FOLDER/village-broadcast.conf` or include FOLDER with `include_dir`; send Mosquitto
    SIGHUP (systemctl reload mosquitto) after every change: connected clients stay connected.
    """
    from broadcast.services import provisioning
    from speakers.mosquitto import broker_can_read

    platform = _platform()
    folder = folder or (Path(platform.settings["MOSQUITTO_DIR"]) if platform.settings["MOSQUITTO_DIR"] else None)
    if folder is None:
        raise BroadcastError(
            "no_folder", "请指定目录或设置 BROADCAST_MOSQUITTO_DIR。", "Give FOLDER or set BROADCAST_MOSQUITTO_DIR."
        )
    user, password = platform.broker_account()
    if not user or not password:
        raise BroadcastError(
            "no_server_account",
            "请先设置 BROADCAST_MQTT_USERNAME 和 BROADCAST_MQTT_PASSWORD。",
            "Set BROADCAST_MQTT_USERNAME and BROADCAST_MQTT_PASSWORD first.",
        )
    try:
        with platform.db.transaction() as session:
            provisioning.write_broker_files(session, platform, folder)
    finally:
        platform.close()
    click.echo(f"已写入 / wrote {folder / 'village-broadcast.conf'} (+ passwd.*, acl.*)")
    if not broker_can_read(folder):
        click.echo(
            f"警告：mosquitto 用户读不到 {folder}（应属 mosquitto 组，0750/0640）"
            f" / warning: the mosquitto user cannot read {folder} (group mosquitto, 0750/0640 expected)",
            err=True,
        )


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


from broadcast.cli_ops import (  # noqa: E402
    audit_group,
    backup_command,
    db_group,
    restore_command,
    tokens_list,
    tokens_revoke,
    users_set_password,
)

for _command in (db_group, backup_command, restore_command, audit_group):
    main.add_command(_command)
users.add_command(users_set_password)
tokens.add_command(tokens_list)
tokens.add_command(tokens_revoke)

from broadcast.cli_admin import export_command, import_group  # noqa: E402  (it extends `users` above)

main.add_command(import_group), main.add_command(export_command)

from broadcast.cli_broker import broker_group  # noqa: E402

main.add_command(broker_group)
