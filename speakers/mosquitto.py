"""Production broker credentials and ACLs for Mosquitto 2 (the embedded broker reads the same files)."""

from __future__ import annotations

import base64
import grp
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from speakers.acl import AclRules, SpeakerAccess, acl_rules, mosquitto_acl_text
from speakers.errors import SpeakerError
from speakers.fsutil import atomic_write

logger = logging.getLogger(__name__)

__all__ = [
    "Listeners",
    "SpeakerAccess",
    "broker_can_read",
    "mosquitto_conf_snippet",
    "parse_listener",
    "parse_mosquitto_acl",
    "password_file_line",
    "password_hash",
    "read_password_file",
    "verify_password",
    "write_mosquitto_files",
]

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for "$7$" hashes
BROKER_GROUP = "mosquitto"  # the user and group a stock Mosquitto (Debian, the official images) runs as
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def _check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise SpeakerError(
            "speakers.bad_username",
            f"消息服务器用户名不合法：{username!r}",
            f"Invalid broker user name: {username!r}",
        )
    return username


def password_hash(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """Hash a password in Mosquitto 2's "$7$" form (PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key)."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_file_line(username: str, password: str) -> str:
    """One line of a Mosquitto 2 password file: `username:$7$...`."""
    return f"{_check_username(username)}:{password_hash(password)}"


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against a "$7$" hash."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3])
        expected = base64.b64decode(parts[4])
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def read_password_file(path: Path) -> dict[str, str]:
    """Read `username:hash` lines (comments and blank lines skipped)."""
    users: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            name, hashed = line.split(":", 1)
            users[name] = hashed
    return users


def parse_mosquitto_acl(text: str) -> AclRules:
    """Parse the `user` / `topic read|write|readwrite` subset of a Mosquitto ACL file."""
    rules: AclRules = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "user":
            current = rules.setdefault(rest.strip(), {"read": [], "write": []})
        elif word == "topic" and current is not None:
            access, _, topic = rest.strip().partition(" ")
            if not topic:
                access, topic = "readwrite", access
            if access in ("read", "readwrite"):
                current["read"].append(topic.strip())
            if access in ("write", "readwrite"):
                current["write"].append(topic.strip())
    return rules


def parse_listener(text: str, *, default_bind: str | None = None) -> tuple[str | None, int]:
    """Parse a listener given as `PORT` or `ADDRESS:PORT` (IPv6 as `[::1]:PORT`) into (bind, port)."""
    value = text.strip()
    bind, _, port_text = value.rpartition(":")
    bind = bind.strip("[]") or default_bind
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SpeakerError(
            "speakers.bad_listener",
            f"监听地址应写作 端口 或 地址:端口，而不是 {text!r}",
            f"A listener is PORT or ADDRESS:PORT, not {text!r}",
        )
    return bind, int(port_text)


@dataclass(frozen=True)
class Listeners:
    """Where the generated Mosquitto configuration listens.

    The server's listener (`server_bind`, default loopback) knows only the server's account and lets it use
    any client id (the worker's persistent `vb-worker-...` session). The speakers' listener knows only the
    speaker accounts and forces each connection's client id to its user name, so no account can take over
    another's session; `tls_port` with `certfile`/`keyfile` adds the same for mqtts. `user` is the account a
    Mosquitto started as root drops to (it must be able to read every generated file).
    """

    speaker_port: int = 1883
    server_port: int = 1884
    server_bind: str = "127.0.0.1"
    speaker_bind: str | None = None  # None = every address
    tls_port: int | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    tls_bind: str | None = None  # None = every address
    user: str | None = BROKER_GROUP

    def __post_init__(self) -> None:
        if self.tls_port and not (self.certfile and self.keyfile):
            raise SpeakerError(
                "speakers.tls_incomplete",
                "TLS 监听需要服务器证书文件和私钥文件。",
                "A TLS listener needs a certificate file and a key file.",
            )
        for name in ("certfile", "keyfile", "cafile"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise SpeakerError(
                    "speakers.tls_file_missing",
                    f"TLS 文件不存在：{value}",
                    f"TLS file not found: {value}",
                    kind="not_found",
                )


def _listener_block(port: int, bind: str | None, passwd: Path, acl_file: Path, *, speakers: bool) -> list[str]:
    lines = [f"listener {port}{' ' + bind if bind else ''}", "allow_anonymous false"]
    if speakers:
        lines.append("use_username_as_clientid true")
    return [*lines, f"password_file {passwd}", f"acl_file {acl_file}"]


def mosquitto_conf_snippet(folder: Path, listeners: Listeners | None = None) -> str:
    """The Mosquitto configuration of the deployment: run it as is (`mosquitto -c FILE`) or include it.

    Include it from a stock mosquitto.conf with `include_dir` (it sets per_listener_settings, which must
    come before any other security option, so the stock file must not set security options itself).
    """
    folder = Path(folder).resolve()
    spec = listeners or Listeners()
    lines = [
        "# generated by village-broadcast: do not edit by hand",
        "# each listener has its own accounts and ACL: the server's and the speakers'",
        "per_listener_settings true",
        "# a county's receipts arrive in bursts (10,000 at a play's start): the default queue of 1000",
        "# messages per client would drop receipts while the server's consumer catches up",
        "max_queued_messages 200000",
        "# and 20 unacknowledged QoS 1 messages in flight per client (the default) would pace that",
        "# consumer by its round trips, a few hundred receipts a second",
        "max_inflight_messages 1000",
    ]
    if spec.user:
        lines += [
            "# started as root, Mosquitto binds its ports and then runs as this user, which reads the files below",
            f"user {spec.user}",
        ]
    lines += [
        "",
        "# the server (web workers and the worker): only the server's account, any client id",
        *_listener_block(spec.server_port, spec.server_bind, folder / "passwd.server", folder / "acl.server",
                         speakers=False),
        "",
        "# speakers: the client id is always the user name, so no account can take over another's session",
        *_listener_block(spec.speaker_port, spec.speaker_bind, folder / "passwd.speakers", folder / "acl.speakers",
                         speakers=True),
    ]  # fmt: skip
    if spec.tls_port and spec.certfile and spec.keyfile:
        lines += [
            "",
            "# speakers over TLS (mqtts): the same accounts and rules",
            *_listener_block(spec.tls_port, spec.tls_bind, folder / "passwd.speakers", folder / "acl.speakers",
                             speakers=True),
            f"certfile {Path(spec.certfile).resolve()}",
            f"keyfile {Path(spec.keyfile).resolve()}",
        ]  # fmt: skip
        if spec.cafile:
            lines.append(f"cafile {Path(spec.cafile).resolve()}")
    return "\n".join([*lines, ""])


def _broker_gid() -> int | None:
    """The gid of group `mosquitto` when this process may give files to it (root, or a member of it)."""
    try:
        gid = grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return None
    return gid if os.geteuid() == 0 or gid in os.getgroups() or gid == os.getegid() else None


def _owner() -> tuple[int, int] | None:
    """(uid, gid) for the generated files: ours, and group `mosquitto` when we may give them to it."""
    gid = _broker_gid()
    return None if gid is None else (os.geteuid(), gid)


def _write(path: Path, text: str) -> None:
    """Atomically, mode 0640, group `mosquitto` when possible (a stock Mosquitto drops to that user)."""
    atomic_write(path, text, mode=0o640, owner=_owner())


def _prepare_folder(folder: Path) -> None:
    """Create the folder 0750 with group `mosquitto` (when possible), so the broker's user may enter it."""
    if folder.is_dir():
        return
    folder.mkdir(parents=True)
    os.chmod(folder, 0o750)  # noqa: S103  (group mosquitto only, like /etc/mosquitto; not left to the umask)
    gid = _broker_gid()
    if gid is not None:
        os.chown(folder, -1, gid)


def broker_can_read(folder: Path) -> bool:
    """True when a broker running as group `mosquitto` (or as anyone) may enter `folder` and read its files."""
    try:
        gid = grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        gid = None
    for path in [Path(folder), *(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))]:
        st = path.stat()
        need = 0o1 if path.is_dir() else 0o4
        if not (st.st_mode & need or (st.st_gid == gid and st.st_mode & (need << 3))):
            return False
    return True


def write_mosquitto_files(
    dir: Path,
    speakers: Iterable[SpeakerAccess],
    server_user: str,
    server_password: str,
    *,
    prefix: str = "vb",
    listeners: Listeners | None = None,
) -> AclRules:
    """Write the broker files into `dir` atomically (mode 0640, group `mosquitto`); return the full rule set.

    - `village-broadcast.conf`: the Mosquitto configuration (two listeners, see `Listeners`); run it with
      `mosquitto -c` or include it, and send Mosquitto SIGHUP after every change;
    - `passwd.server`/`acl.server` and `passwd.speakers`/`acl.speakers`: each listener's accounts;
    - `passwd` and `acl`: every account, for `EmbeddedBroker(password_file=..., acl_file=...)`.
    """
    folder = Path(dir)
    _prepare_folder(folder)
    speakers = list(speakers)
    server_line = password_file_line(server_user, server_password)
    speaker_lines = []
    for access in speakers:
        if access.password_hash:
            speaker_lines.append(f"{_check_username(access.username)}:{access.password_hash}")
        elif access.password:
            speaker_lines.append(password_file_line(access.username, access.password))
        else:
            raise SpeakerError(
                "speakers.no_password",
                f"终端 {access.speaker_id} 没有密码。",
                f"Speaker {access.speaker_id} has no password.",
            )
    rules = acl_rules(prefix, speakers, _check_username(server_user))
    server_rules = {server_user: rules[server_user]}
    speaker_rules = {k: v for k, v in rules.items() if k != server_user}
    _write(folder / "passwd", "\n".join([server_line, *speaker_lines]) + "\n")
    _write(folder / "acl", mosquitto_acl_text(rules))
    _write(folder / "passwd.server", server_line + "\n")
    _write(folder / "acl.server", mosquitto_acl_text(server_rules))
    _write(folder / "passwd.speakers", "\n".join(speaker_lines) + "\n")
    _write(folder / "acl.speakers", mosquitto_acl_text(speaker_rules))
    _write(folder / "village-broadcast.conf", mosquitto_conf_snippet(folder, listeners))
    logger.info("wrote Mosquitto passwd and acl for %d speakers in %s", len(speakers), folder)
    return rules
