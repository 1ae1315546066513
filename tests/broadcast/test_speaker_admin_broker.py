"""A speaker changed in the console or API is changed in Mosquitto's files too (MOSQUITTO_DIR), ready for SIGHUP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speakers.mosquitto import read_password_file
from tests.broadcast.conftest import auth, seed_county
from tests.conftest import free_port, make_app

GRID, OTHER_GRID = "42122410420101", "42122420520101"


def test_moving_and_retiring_rewrite_mosquitto_files(tmp_path: Path, sqlite_url: str) -> None:
    folder = tmp_path / "mosquitto"
    app: Any = make_app(
        tmp_path / "instance", sqlite_url, MQTT_URL=f"mqtt://127.0.0.1:{free_port()}", MOSQUITTO_DIR=str(folder)
    )
    try:
        admin = auth(seed_county(app)["admin"])
        client = app.test_client()
        made = client.post(
            "/api/v1/speakers", json={"id": "spk-x-1", "name": "新音柱", "grid_code": GRID}, headers=admin
        )
        assert made.status_code == 201
        assert client.post("/api/v1/speakers/spk-x-1/provision", headers=admin).status_code == 200
        assert "spk-x-1" in read_password_file(folder / "passwd.speakers")
        assert f"cmd/region/{GRID}" in (folder / "acl.speakers").read_text()

        moved = client.patch("/api/v1/speakers/spk-x-1", json={"grid_code": OTHER_GRID}, headers=admin)
        assert moved.status_code == 200
        acl = (folder / "acl.speakers").read_text().split("user spk-x-1")[1].split("\nuser ")[0]
        assert f"cmd/region/{OTHER_GRID}" in acl
        assert f"cmd/region/{GRID}" not in acl

        assert client.delete("/api/v1/speakers/spk-x-1", headers=admin).status_code in (200, 204)
        assert "spk-x-1" not in read_password_file(folder / "passwd.speakers")
    finally:
        app.extensions["platform"].close()
