"""`broadcast broker ...`: operating the MQTT broker's accounts (the server's password)."""

from __future__ import annotations

from pathlib import Path

import click

from broadcast.platform import Platform
from broadcast.settings import instance_path


@click.group("broker")
def broker_group() -> None:
    """Operate the MQTT broker's accounts."""


@broker_group.command("rotate-password")
@click.option(
    "--mosquitto-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Rewrite the Mosquitto files there (default: setting MOSQUITTO_DIR).",
)
def rotate_password(mosquitto_dir: Path | None) -> None:
    """Give the server's broker account a new password and say how to apply it (never logged)."""
    from broadcast.services import provisioning

    platform = Platform.from_settings(instance_path())
    try:
        with platform.db.transaction() as session:
            rotation = provisioning.rotate_server_password(session, platform, mosquitto_dir)
    finally:
        platform.close()
    click.echo(f"服务器的消息服务器密码已更换 / new broker password for the server account {rotation.user!r}")
    if not rotation.in_settings:
        click.echo(
            f"新密码已写入 {platform.server_password_file}，内置消息服务器已启用它。\n"
            "正在运行的 broadcast run 保持现有连接，重启后使用新密码：请现在重启它。\n"
            f"The new password is in {platform.server_password_file} and the embedded broker uses it already.\n"
            "A running `broadcast run` keeps its connections and uses the new password once restarted: "
            "restart it now."
        )
        return
    click.echo("新密码（只显示这一次，不写入日志）/ new password (shown once, never logged):")
    click.echo(rotation.password)
    folders = ", ".join(str(f) for f in rotation.written if f != platform.broker_dir)
    first = (
        f"1. 已写入 / written: {folders} (passwd.server)"
        if folders
        else "1. 完成第 2 步后运行 / after step 2 run: broadcast speakers broker-files DIR"
    )
    click.echo(
        "接下来 / next steps:\n"
        f"{first}\n"
        f"2. 在每台网页和工作进程主机上设置 BROADCAST_MQTT_USERNAME={rotation.user}，"
        "BROADCAST_MQTT_PASSWORD 为上面的密码（settings.toml 或环境变量；MQTT_URL 中不再写密码）\n"
        f"   set BROADCAST_MQTT_USERNAME={rotation.user} and BROADCAST_MQTT_PASSWORD to the password above on every\n"
        "   web and worker host (no password in BROADCAST_MQTT_URL)\n"
        "3. 重新加载 Mosquitto / reload Mosquitto: systemctl reload mosquitto (SIGHUP)\n"
        "4. 重启网页和工作进程 / restart the web tier and the worker(s)"
    )
