"""GET /api/v1/alerts[/<id>] by region: admins and warning sources see all, others the alerts touching their region."""

from __future__ import annotations

from typing import Any

from broadcast.services import accounts
from tests.alerts.corpus import AreaSpec, InfoSpec, cap
from tests.broadcast.conftest import DALU, HUANGSHA, auth
from tests.broadcast.test_console import csrf_of

CAP = "application/cap+xml"


def _post(client: Any, token: str, ident: str, desc: str, code: str) -> dict[str, Any]:
    body = cap(ident=ident, infos=[InfoSpec(areas=[AreaSpec(desc=desc, geocodes=[("行政区划代码", code)])])])
    response = client.post("/api/v1/alerts", data=body, headers={"Content-Type": CAP, **auth(token)})
    assert response.status_code == 202, response.json
    return response.json


def _listed(client: Any, token: str) -> set[int]:
    response = client.get("/api/v1/alerts", headers=auth(token))
    assert response.status_code == 200
    return {item["id"] for item in response.json["items"]}


def test_alerts_are_scoped_by_region(alert_app: Any, county: dict[str, Any]) -> None:
    client, tokens = alert_app.test_client(), county["tokens"]
    with alert_app.extensions["platform"].db.transaction() as session:
        user = accounts.create_user(session, "dalu-op", "dalu-op-password-1", "operator", DALU)
        tokens["dalu"] = accounts.create_token(session, user)
    source = tokens["warning_source"]
    huangsha = _post(client, source, "SCOPE-HS", "黄沙铺镇", HUANGSHA)["alert_id"]
    dalu = _post(client, source, "SCOPE-DL", "大路乡", DALU)["alert_id"]
    county_wide = _post(client, source, "SCOPE-CTY", "通山县", "421224000000")["alert_id"]
    unresolved = _post(client, source, "SCOPE-FAR", "东城区", "110101000000")
    assert unresolved["action"] == "held"
    everything = {huangsha, dalu, county_wide, unresolved["alert_id"]}

    assert _listed(client, tokens["admin"]) == everything
    assert _listed(client, source) == everything
    for role in ("operator", "viewer", "village_head"):  # all bound inside 黄沙铺镇
        assert _listed(client, tokens[role]) == {huangsha, county_wide}, role
    assert _listed(client, tokens["dalu"]) == {dalu, county_wide}

    assert client.get(f"/api/v1/alerts/{huangsha}", headers=auth(tokens["operator"])).status_code == 200
    for other in (dalu, unresolved["alert_id"]):
        response = client.get(f"/api/v1/alerts/{other}", headers=auth(tokens["operator"]))
        assert response.status_code == 404, other
        assert response.json["error"]["code"] == "not_found"
    refused = client.post(f"/api/v1/alerts/{dalu}/cancel", headers=auth(tokens["operator"]))
    assert refused.status_code == 404  # nor may they stop it
    assert client.get(f"/api/v1/alerts/{dalu}", headers=auth(tokens["dalu"])).json["state"] == "active"

    # a county-wide alert seen from a township: the coverage of that township only
    whole = client.get(f"/api/v1/alerts/{county_wide}", headers=auth(tokens["admin"])).json["coverage"]
    mine = client.get(f"/api/v1/alerts/{county_wide}", headers=auth(tokens["operator"])).json["coverage"]
    assert set(whole["townships"]) == {HUANGSHA, DALU}
    assert set(mine["townships"]) == {HUANGSHA}
    assert mine["speakers"] == len(county["speakers"]["huangsha"]) < whole["speakers"]


def _console(app: Any, username: str) -> tuple[Any, str]:
    """A logged-in console client and its CSRF token."""
    client = app.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    form = {"username": username, "password": f"{username}-password-1", "csrf_token": token}
    assert client.post("/login", data=form).status_code == 302
    return client, csrf_of(client.get("/alerts").get_data(as_text=True))


def test_the_console_page_is_scoped_and_only_operators_act(alert_app: Any, county: dict[str, Any]) -> None:
    client = alert_app.test_client()
    huangsha = _post(client, county["tokens"]["warning_source"], "PAGE-HS", "黄沙铺镇", HUANGSHA)["alert_id"]
    dalu = _post(client, county["tokens"]["warning_source"], "PAGE-DL", "大路乡", DALU)["alert_id"]
    operator, token = _console(alert_app, "operator")
    page = operator.get("/alerts").get_data(as_text=True)
    assert f'data-alert="{huangsha}"' in page
    assert f'data-alert="{dalu}"' not in page
    assert 'id="manual"' in page
    assert operator.get(f"/alerts/{dalu}").status_code == 404
    assert operator.get(f"/alerts/{huangsha}").status_code == 200

    viewer, token = _console(alert_app, "viewer")
    page = viewer.get("/alerts").get_data(as_text=True)
    assert f'data-alert="{huangsha}"' in page
    assert 'id="manual"' not in page  # no emergency button for a viewer
    form = {"text": "测试。", "targets": [HUANGSHA], "confirm": "确认播发", "csrf_token": token}
    before = len(_listed(client, county["tokens"]["admin"]))
    assert viewer.post("/alerts/manual", data=form).status_code == 403
    assert viewer.post(f"/alerts/{huangsha}/cancel", data={"csrf_token": token}).status_code == 403
    assert len(_listed(client, county["tokens"]["admin"])) == before
