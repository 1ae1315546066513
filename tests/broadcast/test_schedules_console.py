"""Schedule console pages: the form (choices, never an RRULE), preview then save, the calendar, the page's actions."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from broadcast.models import Schedule
from tests.broadcast.conftest import HUANGSHA_VILLAGE, auth
from tests.broadcast.test_console import csrf_of, log_in
from tests.broadcast.test_schedules_api import clip_id


def count(app: Any) -> int:
    with app.extensions["platform"].db.transaction() as session:
        return session.scalar(select(func.count()).select_from(Schedule)) or 0


def test_a_village_head_plans_workdays_at_0730_and_sees_it_on_the_calendar(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["village_head"], "普法讲堂第一集。")
    assert log_in(client, "village", "village-password-1").status_code == 302
    form = client.get("/schedules/new").get_data(as_text=True)
    assert "工作日（周一至周五）" in form
    assert "RRULE" not in form
    monday = date.today() + timedelta(days=7 - date.today().weekday())
    fields = {
        "csrf_token": csrf_of(form),
        "title": "普法讲堂",
        "content": f"clip:{clip}",
        "targets": [HUANGSHA_VILLAGE],
        "kind": "workdays",
        "date": monday.isoformat(),
        "time": "07:30",
        "end": "count",
        "count": "10",
        "priority": "normal",
    }
    shown = client.post("/schedules/new", data=fields | {"action": "preview"}).get_data(as_text=True)
    assert "工作日（周一至周五） 07:30，共 10 次" in shown
    assert "没有与其他计划重叠" in shown
    assert count(client.application) == 0  # a preview saves nothing
    bad = client.post("/schedules/new", data=fields | {"action": "save", "time": "", "date": ""})
    assert "开始时间格式无效" in bad.get_data(as_text=True)
    assert count(client.application) == 0
    saved = client.post("/schedules/new", data=fields | {"action": "save"})
    assert saved.status_code == 302
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "工作日（周一至周五） 07:30，共 10 次" in page
    week = client.get(f"/schedules?view=week&start={monday.isoformat()}").get_data(as_text=True)
    assert week.count("普法讲堂</a>") == 5  # Monday to Friday
    months = sorted({(monday + timedelta(days=n)).replace(day=1) for n in range(12)})
    pages = [client.get(f"/schedules?view=month&start={m.isoformat()}").get_data(as_text=True) for m in months]
    assert sum(p.count("普法讲堂</a>") for p in pages) == 10  # the two weeks of workdays, wherever the month ends
    ident = int(saved.headers["Location"].rsplit("/", 1)[1])
    paused = client.post(f"/schedules/{ident}/pause", data={"csrf_token": csrf_of(page)})
    assert paused.status_code == 302
    assert "已暂停" in client.get(f"/schedules/{ident}").get_data(as_text=True)


def test_a_schedule_is_edited_with_the_same_choices_and_bad_input_changes_nothing(
    client: Any, tokens: dict[str, str]
) -> None:
    clip = clip_id(client, tokens["village_head"], "普法讲堂第一集。")
    monday = date.today() + timedelta(days=7 - date.today().weekday())
    body = {"clip_id": clip, "targets": [HUANGSHA_VILLAGE], "rrule": "FREQ=WEEKLY;BYDAY=MO,WE,FR",
            "dtstart": f"{monday.isoformat()}T07:30", "title": "普法讲堂"}  # fmt: skip
    made = client.post("/api/v1/schedules", json=body, headers=auth(tokens["village_head"]))
    ident = made.get_json()["id"]
    assert log_in(client, "village", "village-password-1").status_code == 302
    assert "修改" in client.get(f"/schedules/{ident}").get_data(as_text=True)
    form = client.get(f"/schedules/{ident}/edit").get_data(as_text=True)
    assert "修改定时计划" in form
    assert "RRULE" not in form
    assert 'value="weekly" selected' in form  # the stored rule shown as the form's own choice
    assert all(f'name="days" value="{d}" checked' in form for d in (0, 2, 4))
    assert 'value="07:30"' in form
    fields = {"csrf_token": csrf_of(form), "title": "普法讲堂", "content": f"clip:{clip}",
              "targets": [HUANGSHA_VILLAGE], "kind": "workdays", "date": monday.isoformat(), "time": "08:00",
              "end": "never", "priority": "normal"}  # fmt: skip
    bad = client.post(f"/schedules/{ident}/edit", data=fields | {"action": "save", "date": "明天"})
    assert "开始时间格式无效" in bad.get_data(as_text=True)
    shown = client.post(f"/schedules/{ident}/edit", data=fields | {"action": "preview"}).get_data(as_text=True)
    assert "工作日（周一至周五） 08:00" in shown
    assert "没有与其他计划重叠" in shown  # the schedule does not overlap its own old version
    with client.application.extensions["platform"].db.transaction() as session:
        assert session.get(Schedule, ident).rule == "FREQ=WEEKLY;BYDAY=MO,WE,FR"  # neither changed anything
    saved = client.post(f"/schedules/{ident}/edit", data=fields | {"action": "save"})
    assert saved.status_code == 302
    with client.application.extensions["platform"].db.transaction() as session:
        item = session.get(Schedule, ident)
        assert (item.rule, item.dtstart, item.version) == ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", f"{monday}T08:00:00", 2)
    assert "工作日（周一至周五） 08:00" in client.get(f"/schedules/{ident}").get_data(as_text=True)


def test_an_expert_rule_is_kept_when_the_form_cannot_show_it(client: Any, tokens: dict[str, str]) -> None:
    clip = clip_id(client, tokens["admin"])
    rule = "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"
    body = {"clip_id": clip, "targets": [HUANGSHA_VILLAGE], "rrule": rule, "dtstart": f"{date.today()}T17:00"}
    ident = client.post("/api/v1/schedules", json=body, headers=auth(tokens["admin"])).get_json()["id"]
    assert log_in(client, "admin", "admin-password-123").status_code == 302
    form = client.get(f"/schedules/{ident}/edit").get_data(as_text=True)
    assert "保持现有规则（每月最后一个工作日 17:00）" in form
    fields = {"csrf_token": csrf_of(form), "title": "月末安全提示", "content": f"clip:{clip}",
              "targets": [HUANGSHA_VILLAGE], "kind": "keep", "date": date.today().isoformat(), "time": "17:00",
              "end": "never", "priority": "normal", "action": "save"}  # fmt: skip
    assert client.post(f"/schedules/{ident}/edit", data=fields).status_code == 302
    with client.application.extensions["platform"].db.transaction() as session:
        item = session.get(Schedule, ident)
        assert (item.rule, item.title) == (rule, "月末安全提示")
