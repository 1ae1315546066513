"""Logs: quiet on the terminal by default, INFO in a daily-rotated file in the instance folder (the root logger is
put back after each test by the autouse fixture in tests/conftest.py)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import pytest

from broadcast.logs import configure
from broadcast.settings import load_settings


def test_terminal_quiet_file_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    configure(load_settings(instance))
    log = logging.getLogger("broadcast.test")
    log.info("broadcast 7 done: 12 finished")
    log.warning("broker unreachable")
    for handler in logging.getLogger().handlers:
        handler.flush()
    terminal = capsys.readouterr().err
    assert "broker unreachable" in terminal
    assert "12 finished" not in terminal
    written = (instance / "logs" / "broadcast.log").read_text(encoding="utf-8")
    assert "broadcast 7 done: 12 finished" in written
    assert "broker unreachable" in written
    rotating = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.TimedRotatingFileHandler)]
    assert len(rotating) == 1
    assert rotating[0].backupCount == 14


def test_log_file_setting_and_verbose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "var" / "vb.log"
    configure(load_settings(tmp_path / "absent", {"LOG_FILE": str(target)}), verbose=True)
    configure(load_settings(tmp_path / "absent", {"LOG_FILE": str(target)}), verbose=True)  # no doubled handlers
    logging.getLogger("broadcast.test").debug("debug detail")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert capsys.readouterr().err.count("debug detail") == 1
    assert target.read_text(encoding="utf-8").count("debug detail") == 1
    assert not (tmp_path / "absent").exists()
