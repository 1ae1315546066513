"""The form's choices and their RRULEs, both ways: a stored rule is edited with the choice that made it."""

from __future__ import annotations

import pytest

from schedules import choice_for, rrule_for


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("once", {}),
        ("daily", {}),
        ("daily", {"interval": 3}),
        ("workdays", {}),
        ("weekly", {"days": [0, 2, 4]}),
        ("weekly", {"days": [1], "interval": 2}),
        ("monthly_day", {"monthday": 15}),
        ("monthly_day", {"monthday": -1}),
        ("monthly_weekday", {"nth": -1, "weekday": 4}),
        ("monthly_weekday", {"nth": 2, "weekday": 0, "interval": 3}),
    ],
)
def test_every_form_choice_reads_back(kind: str, options: dict) -> None:
    rule = rrule_for(kind, **options)
    choice = choice_for(rule)
    assert choice is not None
    assert choice["kind"] == kind
    assert rrule_for(str(choice["kind"]), **{k: v for k, v in choice.items() if k != "kind"}) == rule


@pytest.mark.parametrize(
    ("rule", "cron"),
    [
        ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", None),
        ("FREQ=DAILY;BYHOUR=7,12;BYMINUTE=30", None),
        ("FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=15", None),
        (None, "30 7 * * 1-5"),
    ],
)
def test_rules_the_form_cannot_say_are_none(rule: str | None, cron: str | None) -> None:
    assert choice_for("FREQ=DAILY") == {"kind": "daily", "interval": 1}  # the reader works
    assert choice_for(rule, cron) is None
