"""The embedded broker re-reads its account and ACL files when they change: a speaker provisioned a moment ago
connects at once, with its last will on its own state topic, and gets its topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from speakers.broker import EmbeddedBroker
from speakers.errors import SpeakerError
from speakers.mosquitto import SpeakerAccess, write_mosquitto_files
from speakers.transport import connect

P = "vb"
SERVER, SERVER_PW = "broadcast-server", "server-secret-1"
OLD = SpeakerAccess("spk-old", "spk-old", ("g1", "v1"), password="pw-old")
NEW = SpeakerAccess("spk-new", "spk-new", ("g2", "v1"), password="pw-new")


def _connect(url: str, access: SpeakerAccess) -> object:
    return connect(
        url,
        client_id=access.username,
        username=access.username,
        password=access.password,
        will=(f"{P}/state/{access.username}", b'{"online": false}', 1, True),
        timeout=3,
    )


def test_a_speaker_added_to_the_files_connects_at_once(tmp_path: Path) -> None:
    write_mosquitto_files(tmp_path, [OLD], SERVER, SERVER_PW, prefix=P)
    broker = EmbeddedBroker("127.0.0.1", 0, password_file=tmp_path / "passwd", acl_file=tmp_path / "acl")
    broker.start()
    try:
        old = _connect(broker.url, OLD)
        assert old.connected  # the positive path: a speaker known at start
        with pytest.raises(SpeakerError, match="Not authorized"):
            _connect(broker.url, NEW)  # not provisioned yet
        write_mosquitto_files(tmp_path, [OLD, NEW], SERVER, SERVER_PW, prefix=P)  # provisioning, live
        new = _connect(broker.url, NEW)  # at once: no watcher period to wait for
        assert new.connected
        new.close()
        old.close()
    finally:
        broker.stop()
