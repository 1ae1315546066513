"""Secrets from the shell: set a password, list and revoke API tokens; a revoked token stops at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcast.cli import main
from tests.broadcast.conftest import auth
from tests.broadcast.test_console import log_in


@pytest.fixture
def cli(app: Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI pointed at the app's instance and database."""
    platform = app.extensions["platform"]
    monkeypatch.setenv("BROADCAST_INSTANCE", str(platform.instance))
    monkeypatch.setenv("BROADCAST_DATABASE_URL", platform.settings["DATABASE_URL"])
    return CliRunner()


def test_set_password_takes_effect_and_ends_sessions(app: Any, cli: CliRunner, tmp_path: Path) -> None:
    browser = app.test_client()
    assert log_in(browser, "admin", "admin-password-123").status_code == 302
    assert browser.get("/speakers").status_code == 200  # logged in (positive path)
    short = tmp_path / "short"
    short.write_text("abc")
    weak = cli.invoke(main, ["users", "set-password", "admin", "--password-file", str(short)])
    assert weak.exit_code == 2
    assert "weak_password" not in weak.output  # the message, in words
    new = tmp_path / "new"
    new.write_text("a-much-better-password-42\n")
    done = cli.invoke(main, ["users", "set-password", "admin", "--password-file", str(new)])
    assert done.exit_code == 0, done.output
    assert browser.get("/speakers").status_code == 302  # the old session ended
    fresh = app.test_client()
    assert log_in(fresh, "admin", "admin-password-123").status_code != 302
    assert log_in(fresh, "admin", "a-much-better-password-42").status_code == 302


def test_prompted_password_is_asked_twice(app: Any, cli: CliRunner) -> None:
    result = cli.invoke(
        main, ["users", "set-password", "admin"], input="another-good-password\nanother-good-password\n"
    )
    assert result.exit_code == 0, result.output
    assert "another-good-password" not in result.output  # never echoed
    assert log_in(app.test_client(), "admin", "another-good-password").status_code == 302


def test_tokens_list_and_revoke(app: Any, cli: CliRunner) -> None:
    made = cli.invoke(main, ["tokens", "create", "admin"])
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    client = app.test_client()
    assert client.get("/api/v1/regions", headers=auth(token)).status_code == 200
    listed = cli.invoke(main, ["tokens", "list", "admin"])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if line.split("\t")[1] == token[:10])
    assert row.endswith("\tno")
    token_id = row.split("\t")[0]
    revoked = cli.invoke(main, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/v1/regions", headers=auth(token)).status_code == 401
    assert cli.invoke(main, ["tokens", "list", "admin"]).output.count("\tyes") == 1
    assert cli.invoke(main, ["tokens", "revoke", "999999"]).exit_code == 2
