"""This process's link to the broker: sign and publish command rows, with the server's key."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from broadcast.models import Command
from speakers import protocol
from speakers.protocol import COMMAND_TYPES
from speakers.server import CommandPublisher, minimal_targets
from speakers.signing import KeyPair
from speakers.transport import Transport, connect

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)


def client_id(role: str) -> str:
    """A broker client id unique to this process (two web workers never share one)."""
    return f"vb-{role}-{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}"


def open_transport(platform: Platform, ident: str, *, clean_session: bool = True) -> Transport:
    """Connect to the deployment's broker with the server account, as client `ident`."""
    username, password = platform.broker_account()
    timeout = float(platform.settings["MQTT_TIMEOUT_S"])
    return connect(
        platform.mqtt_url,
        client_id=ident,
        username=username,
        password=password,
        timeout=timeout,
        clean_session=clean_session,
    )


class Messenger:
    """A broker connection and a command publisher holding the server's signing key."""

    def __init__(
        self, transport: Transport, publisher: CommandPublisher, client_id: str, key_path: Path | None = None
    ) -> None:
        self.transport = transport
        self.publisher = publisher
        self.client_id = client_id
        self.key_path = key_path
        self._key_mtime = key_path.stat().st_mtime_ns if key_path else 0

    def _reload_key_if_rotated(self) -> None:
        """`broadcast keys rotate` swaps the key file; every process picks the new key up on its next publish."""
        if self.key_path is None:
            return
        mtime = self.key_path.stat().st_mtime_ns
        if mtime != self._key_mtime:
            self.publisher.signer = KeyPair.load(self.key_path)
            self._key_mtime = mtime
            logger.info("signing key reloaded: %s", self.publisher.signer.key_id)

    @classmethod
    def connect(cls, platform: Platform, role: str = "web") -> Messenger:
        """Open the broker connection of this process."""
        ident = client_id(role)
        transport = open_transport(platform, ident)
        key = KeyPair.load(platform.signing_key_path)
        publisher = CommandPublisher(transport, key, prefix=platform.settings["TOPIC_PREFIX"])
        return cls(transport, publisher, ident, platform.signing_key_path)

    def publish(self, command: Command) -> list[str]:
        """Sign and publish one command row to its targets' topics."""
        self._reload_key_if_rotated()
        body = command.body
        message = COMMAND_TYPES[command.kind].from_dict(body["body"])
        return self.publisher.publish(
            message,
            seq=command.seq,
            command_id=command.command_id,
            targets=body["targets"],
            issued_at=command.issued_at,
            expires_at=command.expires_at,
        )

    def resend(self, command: Command, speaker_ids: list[str]) -> list[str]:
        """Publish the identical signed command (same id, same sequence) to each speaker's own topic.

        Speakers treat an id they have already seen as a duplicate, so a re-send never plays twice.
        """
        self._reload_key_if_rotated()
        body = command.body
        message = COMMAND_TYPES[command.kind].from_dict(body["body"])
        payload = protocol.encode_command(
            message,
            signer=self.publisher.signer,
            seq=command.seq,
            command_id=command.command_id,
            targets=minimal_targets(body["targets"]),  # as `CommandPublisher.publish` signs them
            issued_at=command.issued_at,
            expires_at=command.expires_at,
        )
        prefix = self.publisher.prefix
        topics = [protocol.command_topic_for_speaker(prefix, sid) for sid in speaker_ids]
        for topic in topics:
            self.transport.publish(topic, payload, qos=1)
        logger.info("re-sent %s %s seq=%d to %d speaker(s)", command.kind, command.command_id, command.seq, len(topics))
        return topics

    def close(self) -> None:
        """Disconnect from the broker."""
        self.transport.close()
