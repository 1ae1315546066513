"""The `broadcast` command line: init, users, tokens, say — and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from broadcast.cli import main
from broadcast.models import AuditEvent, Broadcast, User


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner on a fresh instance folder with no broker reachable."""
    from tests.conftest import free_port

    monkeypatch.setenv("BROADCAST_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("BROADCAST_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    monkeypatch.setenv("BROADCAST_TTS_ENGINES", "espeak")
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    return CliRunner()


def _platform(tmp_path: Path):  # type: ignore[no-untyped-def]
    from broadcast.platform import Platform

    return Platform.from_settings(tmp_path / "instance")


def test_init_prints_the_password_once_and_only_once(runner: CliRunner, tmp_path: Path) -> None:
    first = runner.invoke(main, ["init"])
    assert first.exit_code == 0, first.output
    password = first.output.split("password (shown once):")[1].split()[0]
    assert len(password) >= 12
    again = runner.invoke(main, ["init"])
    assert again.exit_code == 2
    assert "已初始化" in again.output
    assert password not in again.output
    platform = _platform(tmp_path)
    with platform.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert (platform.instance / "keys" / "server_ed25519.pem").stat().st_mode & 0o777 == 0o600
    platform.close()


def test_init_with_password_file_and_named_admin(runner: CliRunner, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a-long-enough-password\n")
    result = runner.invoke(main, ["init", "--admin", "root2", "--admin-password-file", str(secret)])
    assert result.exit_code == 0, result.output
    assert "a-long-enough-password" not in result.output
    from werkzeug.security import check_password_hash

    platform = _platform(tmp_path)
    with platform.db.transaction() as session:
        user = session.scalars(select(User)).one()
        assert user.username == "root2"
        assert check_password_hash(user.password_hash, "a-long-enough-password")
    platform.close()


def test_users_tokens_and_errors(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(main, ["init"]).exit_code == 0
    platform = _platform(tmp_path)
    from broadcast import demo

    with platform.db.transaction() as session:
        demo.seed(session)
    made = runner.invoke(main, ["users", "create", "zhangsan", "--role", "operator", "--region", "421224104000"])
    assert made.exit_code == 0, made.output
    assert runner.invoke(main, ["users", "create", "zhangsan", "--role", "viewer"]).exit_code == 2
    bad_region = runner.invoke(main, ["users", "create", "lisi", "--role", "operator", "--region", "999"])
    assert bad_region.exit_code == 2
    assert "不存在" in bad_region.output
    wrong_level = runner.invoke(
        main, ["users", "create", "wangwu", "--role", "village_head", "--region", "421224104000"]
    )
    assert wrong_level.exit_code == 2
    token = runner.invoke(main, ["tokens", "create", "zhangsan"])
    assert token.exit_code == 0
    last = token.output.strip().splitlines()[-1]
    assert last.startswith("vb_")
    assert len(last) > 30
    assert runner.invoke(main, ["tokens", "create", "nobody"]).exit_code == 2
    with platform.db.transaction() as session:
        actions = set(session.scalars(select(AuditEvent.action)))
        assert {"instance.init", "user.create", "token.create"} <= actions
    platform.close()


def test_say_records_a_broadcast_and_refuses_unknown_regions(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(main, ["init"]).exit_code == 0
    platform = _platform(tmp_path)
    from broadcast import demo

    with platform.db.transaction() as session:
        demo.seed(session)
    bad = runner.invoke(main, ["say", "测试", "--to", "123456"])
    assert bad.exit_code == 2
    assert "未知的区域" in bad.output
    empty = runner.invoke(main, ["say", "   ", "--to", "421224104000"])
    assert empty.exit_code == 2
    ok = runner.invoke(main, ["say", "各位村民请注意。", "--to", "421224104000", "--priority", "urgent"])
    assert ok.exit_code == 0, ok.output
    broadcast_id = int(ok.output.strip().splitlines()[-1])
    with platform.db.transaction() as session:
        item = session.get(Broadcast, broadcast_id)
        assert item is not None
        assert item.priority == "urgent"
        assert item.source == "cli"
        assert session.scalar(select(func.count()).select_from(Broadcast)) == 1
    platform.close()


def test_a_new_demo_instance_has_no_quiet_hours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo works at any hour; an existing instance or an explicit setting is never overridden."""
    from broadcast.demo import prepare_settings
    from broadcast.settings import load_settings

    monkeypatch.delenv("BROADCAST_QUIET_HOURS", raising=False)
    assert load_settings(tmp_path / "plain")["QUIET_HOURS"] == "22:00-06:00", "the product default keeps them"
    fresh = tmp_path / "fresh"
    assert prepare_settings(fresh)
    assert load_settings(fresh)["QUIET_HOURS"] == ""
    used = tmp_path / "used"
    used.mkdir()
    (used / "broadcast.db").write_bytes(b"")
    assert not prepare_settings(used)
    assert not (used / "settings.toml").exists()
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "21:00-07:00")
    assert not prepare_settings(tmp_path / "explicit")
    assert load_settings(tmp_path / "explicit")["QUIET_HOURS"] == "21:00-07:00"


def test_run_says_plainly_when_a_port_is_taken(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A taken broker or web port is one clear line in both languages and exit code 2, not a traceback."""
    import socket

    from tests.conftest import free_port

    monkeypatch.delenv("BROADCAST_MQTT_URL")  # the embedded broker
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        broker = runner.invoke(main, ["run", "--port", str(free_port()), "--mqtt-port", busy])
        assert broker.exit_code == 2, broker.output
        assert "错误 / error" in broker.output
        assert busy in broker.output
        assert "Traceback" not in broker.output
        web = runner.invoke(main, ["run", "--port", busy, "--mqtt-port", str(free_port())])
        assert web.exit_code == 2, web.output
        assert f"网页端口 127.0.0.1:{busy} 无法使用" in web.output
        assert "--port" in web.output
