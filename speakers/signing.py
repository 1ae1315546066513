"""Ed25519 keys of the server: generate, store, load, sign and verify.

Every signature covers a context label plus the exact body bytes, so a signature made for one kind of
message (a command) can never be passed off as another (a time reply).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from speakers.errors import SpeakerError
from speakers.fsutil import atomic_write
from speakers.sodium import sodium_verify

logger = logging.getLogger(__name__)

# Context labels bound into every signature (domain separation).
COMMAND_CONTEXT = b"village-broadcast command v1\n"
TIME_CONTEXT = b"village-broadcast time v1\n"


def key_id_for(public_raw: bytes) -> str:
    """Return the short stable id of a raw 32-byte Ed25519 public key (16 hex digits of its SHA-256)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _bad_key(en: str, zh: str, **details: object) -> SpeakerError:
    return SpeakerError("speakers.bad_key", zh, en, kind="invalid", **details)


class PublicKey:
    """A trusted server public key: its id and a verifier."""

    __slots__ = ("_key", "key_id", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise _bad_key("An Ed25519 public key has 32 bytes.", "Ed25519 公钥应为 32 字节。", length=len(raw))
        self.raw = raw
        self.key_id = key_id_for(raw)
        self._key = Ed25519PublicKey.from_public_bytes(raw)

    @classmethod
    def from_b64(cls, text: str) -> PublicKey:
        """Parse a base64 public key as printed by `KeyPair.public_b64`."""
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad_key("The public key is not valid base64.", "公钥不是有效的 base64。") from exc
        return cls(raw)

    def b64(self) -> str:
        """Return the key as base64 text."""
        return base64.b64encode(self.raw).decode("ascii")

    def verify(self, context: bytes, body: bytes, signature: bytes) -> bool:
        """Return True when `signature` is this key's signature of `context + body`."""
        if sodium_verify is not None:
            return sodium_verify(signature, context + body, self.raw)
        return self.verify_openssl(context, body, signature)

    def verify_openssl(self, context: bytes, body: bytes, signature: bytes) -> bool:
        """The same check through `cryptography` (always available)."""
        try:
            self._key.verify(signature, context + body)
        except InvalidSignature:
            return False
        return True


@dataclass
class KeyPair:
    """The server's Ed25519 signing key."""

    private: Ed25519PrivateKey = field(repr=False)
    key_id: str = ""

    def __post_init__(self) -> None:
        self.key_id = key_id_for(self.public_raw())

    @classmethod
    def generate(cls) -> KeyPair:
        """Make a new random key pair."""
        return cls(Ed25519PrivateKey.generate())

    def public_raw(self) -> bytes:
        """Return the raw 32-byte public key."""
        return self.private.public_key().public_bytes_raw()

    def public_b64(self) -> str:
        """Return the public key as base64 text (what speakers are provisioned with)."""
        return base64.b64encode(self.public_raw()).decode("ascii")

    def public_key(self) -> PublicKey:
        """Return the public half as a verifier."""
        return PublicKey(self.public_raw())

    def sign(self, context: bytes, body: bytes) -> bytes:
        """Sign `context + body` and return the 64-byte signature."""
        return self.private.sign(context + body)

    def save(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM with mode 0600, atomically (temp file, fsync, replace)."""
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        atomic_write(path, pem, mode=0o600)
        logger.info("saved signing key %s to %s", self.key_id, path)

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        """Read a private key written by `save`."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError as exc:
            raise SpeakerError(
                "speakers.key_not_found",
                f"找不到签名密钥文件：{path}",
                f"Signing key file not found: {path}",
                kind="not_found",
            ) from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise _bad_key("The signing key file is not a PEM private key.", "签名密钥文件不是 PEM 私钥。") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise _bad_key("The signing key is not an Ed25519 key.", "签名密钥不是 Ed25519 密钥。")
        return cls(key)
