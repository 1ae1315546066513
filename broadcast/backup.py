"""Backup and restore of one instance: database, media, keys and settings in one archive.

A backup is taken online (SQLite's backup API or `pg_dump`); a restore goes into a stopped instance and then
moves the command sequence far above anything issued since the backup, so speakers accept the next command
instead of refusing it as a replay.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlalchemy import func, make_url, select, text
from sqlalchemy.orm import Session

from broadcast.errors import BroadcastError
from broadcast.models import Broadcast, Clip, Command, utcnow
from broadcast.platform import Platform
from broadcast.services import audit

logger = logging.getLogger(__name__)
FORMAT = "village-broadcast-backup/1"
# After a restore the sequence jumps this far above the restored maximum: more commands than a county issues
# in years, so whatever was issued between the backup and the restore lies below the new numbers.
SEQUENCE_JUMP = 1_000_000
# Instance files that are not state: the database (dumped separately), demo sinks, logs, locks, runtime URLs.
SKIP_TOP = {"sinks", "logs", "runtime.json", "run.lock", "worker.lock"}
SKIP_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")


def _error(code: str, zh: str, en: str, kind: str = "invalid") -> BroadcastError:
    return BroadcastError(code, zh, en, kind=kind)


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def _pg_args(url: str) -> tuple[str, list[str]]:
    """A libpq URL for pg_dump/pg_restore and the `-n SCHEMA` restriction a search_path option implies."""
    parsed = urlparse(url.replace("postgresql+psycopg://", "postgresql://", 1))
    options = parse_qs(parsed.query).get("options", [""])[0]
    schema_args: list[str] = []
    for part in options.split():
        if part.startswith("-csearch_path="):
            schema_args = ["-n", part.split("=", 1)[1]]
    return parsed._replace(query="").geturl(), schema_args


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise _error(
            "tool_missing",
            f"找不到 {name}：请安装 PostgreSQL 客户端（Debian：postgresql-client）。",
            f"{name} not found: install the PostgreSQL client (Debian: postgresql-client).",
            kind="unavailable",
        )
    return path


def _run(args: list[str]) -> None:
    logger.debug("running %s", args[0])
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise _error(
            "tool_failed",
            f"{Path(args[0]).name} 失败：{done.stderr.strip()[:500]}",
            f"{Path(args[0]).name} failed: {done.stderr.strip()[:500]}",
            kind="internal",
        )


def _dump_database(platform: Platform, workdir: Path) -> str:
    url = platform.settings["DATABASE_URL"]
    if _is_sqlite(url):
        target = workdir / "database.sqlite3"
        source = sqlite3.connect(_sqlite_path(url))
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)  # consistent while the instance keeps writing
        finally:
            copy.close()
            source.close()
        return target.name
    target = workdir / "database.pgdump"
    libpq_url, schema = _pg_args(url)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", *schema, "-f", str(target), libpq_url])
    return target.name


def _state_files(platform: Platform) -> list[tuple[Path, str]]:
    """(path on disk, name in the archive) of every instance file worth keeping, media included."""
    instance = platform.instance
    media = Path(platform.settings["MEDIA_DIR"])
    files: list[tuple[Path, str]] = []
    for path in sorted(instance.rglob("*")):
        relative = path.relative_to(instance)
        if not path.is_file() or relative.parts[0] in SKIP_TOP or path.name.endswith(SKIP_SUFFIXES):
            continue
        if media.resolve() in path.resolve().parents:
            continue
        files.append((path, f"instance/{relative.as_posix()}"))
    files.extend((p, f"media/{p.relative_to(media).as_posix()}") for p in sorted(media.rglob("*")) if p.is_file())
    return files


def backup(platform: Platform, archive: Path) -> dict[str, Any]:
    """Write one .tar.gz with the database, media, keys and settings of a running instance; return its manifest."""
    with tempfile.TemporaryDirectory(prefix="vb-backup-") as tmp:
        workdir = Path(tmp)
        with platform.db.transaction() as session:
            max_seq = session.scalar(select(func.max(Command.seq))) or 0
        manifest = {
            "format": FORMAT,
            "created_at": time.time(),
            "schema": platform.db.revision(),
            "database": _dump_database(platform, workdir),
            "max_seq": max_seq,
        }
        partial = archive.with_name(archive.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
            tar.add(workdir / manifest["database"], arcname=manifest["database"])
            for path, name in _state_files(platform):
                tar.add(path, arcname=name)
        os.replace(partial, archive)  # a crash mid-write never leaves a truncated archive under the real name
    logger.warning("backup written: %s (schema %s, max seq %s)", archive, manifest["schema"], max_seq)
    return manifest


def _refuse_if_running(instance: Path) -> None:
    for name in ("run.lock", "worker.lock"):
        path = instance / name
        if not path.exists():
            continue
        with path.open("a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _error(
                    "instance_running",
                    "实例仍在运行：请先停止 broadcast run / broadcast worker 再恢复。",
                    "The instance is running: stop `broadcast run` / `broadcast worker` before restoring.",
                    kind="conflict",
                ) from None
            fcntl.flock(fh, fcntl.LOCK_UN)


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise _error(
                "bad_backup", f"备份文件含不安全的条目：{member.name}", f"Unsafe entry in backup: {member.name}"
            )
        members.append(member)
    return members


def _restore_database(platform: Platform, dump: Path) -> None:
    url = platform.settings["DATABASE_URL"]
    platform.db.dispose()
    if _is_sqlite(url):
        if dump.suffix != ".sqlite3":
            raise _error(
                "bad_backup", "备份来自 PostgreSQL，当前实例用 SQLite。", "Backup is PostgreSQL; instance is SQLite."
            )
        target = _sqlite_path(url)
        for suffix in ("-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        partial = target.with_name(target.name + ".restoring")
        shutil.copyfile(dump, partial)
        os.replace(partial, target)
        return
    if dump.suffix != ".pgdump":
        raise _error(
            "bad_backup", "备份来自 SQLite，当前实例用 PostgreSQL。", "Backup is SQLite; instance is PostgreSQL."
        )
    libpq_url, schema = _pg_args(url)
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            *schema,
            "-d",
            libpq_url,
            str(dump),
        ]
    )


def _jump_sqlite_broadcasts(session: Session, base: int) -> None:
    """SQLite gives a new row max(id) + 1, so one marker row at `base` lifts every later broadcast id above it."""
    marker = Clip(
        sha256="0" * 64, format="mp3", mime="audio/mpeg", size_bytes=0, duration_ms=0, loudness_lufs=0.0,
        true_peak_dbtp=0.0, source="restore", title="（系统恢复标记 / restore marker）", retired_at=utcnow(),
    )  # fmt: skip
    session.add(marker)
    session.flush()
    now = time.time()
    session.add(
        Broadcast(
            id=base,
            clip_id=marker.id,
            priority="background",
            volume=0,
            repeat=1,
            targets=[],
            wire_targets=[],
            start_at=now,
            expires_at=now,
            status="done",
            source="restore",
        )
    )


def jump_sequence(platform: Platform, floor: int) -> dict[str, int]:
    """Lift the next command sequence and broadcast id far above anything issued before the restore.

    Speakers refuse a sequence number they have seen (a replay) and never start a broadcast id twice, and both
    kept rising after the backup was taken; so both jump SEQUENCE_JUMP above the restored maximum.
    """
    with platform.db.transaction() as session:
        seq_base = max(session.scalar(select(func.max(Command.seq))) or 0, floor) + SEQUENCE_JUMP
        broadcast_base = (session.scalar(select(func.max(Broadcast.id))) or 0) + SEQUENCE_JUMP
        if platform.db.engine.dialect.name == "sqlite":
            session.execute(text("DELETE FROM sqlite_sequence WHERE name = 'commands'"))
            session.execute(
                text("INSERT INTO sqlite_sequence (name, seq) VALUES ('commands', :base)"), {"base": seq_base}
            )
            _jump_sqlite_broadcasts(session, broadcast_base)
        else:
            for table, column, base in (("commands", "seq", seq_base), ("broadcasts", "id", broadcast_base)):
                session.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), :base)"), {"base": base}
                )
        audit.record(session, "cli", "instance.restored", sequence_base=seq_base, broadcast_base=broadcast_base)
    return {"sequence_base": seq_base, "broadcast_base": broadcast_base}


def restore(platform: Platform, archive: Path) -> dict[str, Any]:
    """Put a backup into this stopped instance; the command sequence then resumes far above the backup's."""
    _refuse_if_running(platform.instance)
    if not archive.is_file():
        raise _error("not_found", f"备份文件不存在：{archive}", f"Backup not found: {archive}", kind="not_found")
    with tempfile.TemporaryDirectory(prefix="vb-restore-") as tmp, tarfile.open(archive, "r:gz") as tar:
        workdir = Path(tmp)
        tar.extractall(workdir, members=_safe_members(tar), filter="data")
        try:
            manifest = json.loads((workdir / "manifest.json").read_text())
        except (OSError, ValueError):
            manifest = {}
        if manifest.get("format") != FORMAT:
            raise _error("bad_backup", "这不是本系统的备份文件。", "This is not a village-broadcast backup.")
        _restore_database(platform, workdir / manifest["database"])
        media = Path(platform.settings["MEDIA_DIR"])
        for folder, target in (("instance", platform.instance), ("media", media)):
            source = workdir / folder
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
    platform.db.upgrade()  # a backup from an older version is brought up to this code's schema
    manifest.update(jump_sequence(platform, int(manifest.get("max_seq") or 0)))
    logger.warning("restored %s; commands resume above sequence %s", archive, manifest["sequence_base"])
    return manifest
