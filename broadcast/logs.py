"""Logging of every server process: quiet on the terminal, fuller in a rotated file in the instance folder."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_MARK = "_village_broadcast_handler"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the moment (a test runner may swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        """Ignore the stream logging assigns: standard error is looked up at each write."""


def log_file(settings: dict[str, Any]) -> Path | None:
    """Where the log file goes: LOG_FILE, else logs/broadcast.log in an existing instance folder."""
    if settings.get("LOG_FILE"):
        return Path(settings["LOG_FILE"])
    instance = Path(settings["INSTANCE"])
    return instance / "logs" / "broadcast.log" if instance.is_dir() else None


def configure(settings: dict[str, Any], *, verbose: bool = False) -> None:
    """Terminal at LOG_LEVEL (WARNING by default; DEBUG with -v); the file at INFO or finer, rotated daily."""
    terminal_level = logging.DEBUG if verbose else logging.getLevelName(str(settings["LOG_LEVEL"]).upper())
    if not isinstance(terminal_level, int):
        terminal_level = logging.WARNING
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    terminal = _Stderr()
    terminal.setLevel(terminal_level)
    handlers: list[logging.Handler] = [terminal]
    path = log_file(settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.TimedRotatingFileHandler(path, when="midnight", backupCount=14, encoding="utf-8")
        rotating.setLevel(min(terminal_level, logging.INFO))
        handlers.append(rotating)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    # APScheduler logs every run of every job at INFO; only its warnings matter.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
