"""Package hygiene: imports flow one way, every setting and error code is documented."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import media
from media import MediaConfig, MediaError

ROOT = Path(__file__).resolve().parents[2]


def test_media_imports_neither_flask_nor_the_other_packages() -> None:
    code = (
        "import sys, media, media.tts; bad = [m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'broadcast', 'speakers', 'schedules', 'sqlalchemy')]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "media.md").read_text("utf-8")
    for field in dataclasses.fields(MediaConfig):
        assert f"`{field.name}`" in doc, field.name


def test_every_raised_error_code_is_documented() -> None:
    doc = (ROOT / "docs" / "media.md").read_text("utf-8")
    source = "\n".join(p.read_text("utf-8") for p in (ROOT / "media").rglob("*.py"))
    codes = set(re.findall(r'"(media\.[a-z_]+)"', source))
    assert len(codes) > 15
    for code in codes:
        assert f"`{code}`" in doc, code


def test_error_shape() -> None:
    err = MediaError("media.x", "中文", "English", kind="conflict", limit=3)
    assert (err.code, err.kind, err.zh, err.en, err.details, str(err)) == (
        "media.x",
        "conflict",
        "中文",
        "English",
        {"limit": 3},
        "English",
    )
    assert set(media.__all__) >= {"synthesize_text", "ingest_upload", "tts_key", "MediaStore", "Wrap"}
