"""`broadcast import|export` and `broadcast users` on the command line: exit codes and per-row reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from broadcast.cli import main
from broadcast.models import LoginAttempt, Region, Speaker, User
from tests.broadcast.test_import import REGION_HEADERS, SPEAKER_HEADERS, county_rows, csv_bytes, xlsx


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner on a fresh, initialized instance with no broker reachable."""
    from tests.conftest import free_port

    monkeypatch.setenv("BROADCAST_INSTANCE", str(tmp_path / "instance"))
    monkeypatch.setenv("BROADCAST_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    monkeypatch.setenv("BROADCAST_QUIET_HOURS", "")
    cli = CliRunner()
    secret = tmp_path / "pw"
    secret.write_text("admin-password-123")
    assert cli.invoke(main, ["init", "--admin-password-file", str(secret)]).exit_code == 0
    return cli


def _count(tmp_path: Path, model: type) -> int:
    from broadcast.platform import Platform

    platform = Platform.from_settings(tmp_path / "instance")
    try:
        with platform.db.transaction() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        platform.close()


def test_import_dry_run_then_apply_then_export_round_trip(runner: CliRunner, tmp_path: Path) -> None:
    region_rows, speaker_rows = county_rows(townships=2, villages=4, grids=8, speakers=20)
    regions_file = tmp_path / "regions.xlsx"
    regions_file.write_bytes(xlsx(REGION_HEADERS, region_rows))
    speakers_file = tmp_path / "speakers.csv"
    speakers_file.write_bytes(csv_bytes(SPEAKER_HEADERS, speaker_rows, "gbk"))

    dry = runner.invoke(main, ["import", "regions", str(regions_file), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output
    assert _count(tmp_path, Region) == 0
    done = runner.invoke(main, ["import", "regions", str(regions_file)])
    assert done.exit_code == 0, done.output
    assert f"{len(region_rows)} new" in done.output
    done = runner.invoke(main, ["import", "speakers", str(speakers_file)])
    assert done.exit_code == 0, done.output
    assert _count(tmp_path, Speaker) == len(speaker_rows)

    exported = tmp_path / "out.xlsx"
    result = runner.invoke(main, ["export", "speakers", str(exported)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["import", "speakers", str(exported)])
    assert again.exit_code == 0, again.output
    assert f"0 new, 0 updated, {len(speaker_rows)} unchanged" in again.output
    template = tmp_path / "template.csv"
    assert runner.invoke(main, ["export", "regions", str(template), "--template"]).exit_code == 0
    assert template.read_bytes().decode("utf-8-sig").strip() == ",".join(REGION_HEADERS)


def test_import_with_errors_exits_non_zero_with_a_row_report_and_writes_nothing(
    runner: CliRunner, tmp_path: Path
) -> None:
    region_rows, _speakers = county_rows(townships=1, villages=1, grids=1, speakers=0)
    good = tmp_path / "good.xlsx"
    good.write_bytes(xlsx(REGION_HEADERS, region_rows))
    assert runner.invoke(main, ["import", "regions", str(good)]).exit_code == 0
    bad = tmp_path / "bad.csv"
    rows = [[*region_rows[0]], ["421224300000", "乡镇", region_rows[0][0], "乡镇"], ["421224400201", "村", "x", "村"]]
    bad.write_bytes(csv_bytes(REGION_HEADERS, [*rows, rows[1]], "utf-8"))
    result = runner.invoke(main, ["import", "regions", str(bad)])
    assert result.exit_code == 1
    assert "第 4 行 [上级代码]" in result.output
    assert "row 4 [parent_code]" in result.output
    assert "第 5 行 [区划代码]" in result.output
    assert "nothing imported" in result.output
    assert _count(tmp_path, Region) == len(region_rows)


def test_users_list_set_role_disable_unlock_reset_password(runner: CliRunner, tmp_path: Path) -> None:
    region_rows, _speakers = county_rows(townships=1, villages=1, grids=1, speakers=0)
    regions_file = tmp_path / "regions.xlsx"
    regions_file.write_bytes(xlsx(REGION_HEADERS, region_rows))
    assert runner.invoke(main, ["import", "regions", str(regions_file)]).exit_code == 0
    town = region_rows[1][0]
    assert runner.invoke(main, ["users", "create", "clerk", "--role", "viewer"]).exit_code == 0
    refused = runner.invoke(main, ["users", "set-role", "clerk", "--role", "operator", "--region", region_rows[2][0]])
    assert refused.exit_code == 2
    assert "不能绑定" in refused.output
    changed = runner.invoke(main, ["users", "set-role", "clerk", "--role", "operator", "--region", town])
    assert changed.exit_code == 0, changed.output
    listed = runner.invoke(main, ["users", "list"])
    assert f"clerk\toperator\t{town}\tactive" in listed.output

    from broadcast.platform import Platform

    platform = Platform.from_settings(tmp_path / "instance")
    with platform.db.transaction() as session:
        session.add_all([LoginAttempt(username="clerk", address="10.0.0.1") for _ in range(3)])
    assert runner.invoke(main, ["users", "unlock", "clerk"]).exit_code == 0
    assert _count(tmp_path, LoginAttempt) == 0

    reset = runner.invoke(main, ["users", "reset-password", "clerk"])
    assert reset.exit_code == 0
    password = reset.output.strip().splitlines()[-1]
    assert runner.invoke(main, ["users", "disable", "clerk"]).exit_code == 0
    from werkzeug.security import check_password_hash

    with platform.db.transaction() as session:
        user = session.scalars(select(User).where(User.username == "clerk")).one()
        assert check_password_hash(user.password_hash, password)
        assert user.active is False
    platform.close()
    missing = runner.invoke(main, ["users", "disable", "nobody"])
    assert missing.exit_code == 2
    assert "不存在" in missing.output
