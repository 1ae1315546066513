"""The web server's thread survives a close from another thread (the runner's shutdown, the test stacks' teardown)."""

from __future__ import annotations

import threading
from typing import Any

from broadcast.runner import web_server
from tests.conftest import free_port


def _nothing(_environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("204 No Content", [])
    return []


def test_a_listening_socket_closed_under_the_loop_ends_it_without_an_error() -> None:
    """The race a close from another thread can leave: the descriptor closed, still among those the loop waits on."""
    server = web_server(_nothing, "127.0.0.1", free_port(), 1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # what would kill the server's thread
            errors.append(exc)

    server.socket.close()  # closed, but not yet taken out of the loop's map
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    server.close()
    assert not thread.is_alive(), "the loop noticed the closed socket and ended"
    assert errors == []
