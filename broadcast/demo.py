"""The demo county: regions modelled on 通山县 (421224), two speakers per grid, simulated on this machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broadcast.models import Region, Speaker
from broadcast.platform import Platform, write_private
from broadcast.services import audit, regions
from broadcast.settings import ENV_PREFIX
from speakers.config import AgentConfig

COUNTY = ("421224000000", "通山县")
TOWNSHIPS = {
    ("421224104000", "黄沙铺镇"): [("421224104201", "黄沙村"), ("421224104202", "西庄村"), ("421224104203", "上坳村")],
    ("421224205000", "大路乡"): [("421224205201", "大路村"), ("421224205202", "吴田村"), ("421224205203", "山口村")],
}
GRIDS = (("01", "第一网格"), ("02", "第二网格"))
SPEAKERS_PER_GRID = 2
DEMO_SETTINGS = """\
# Written by `broadcast run --demo` for a new instance, so the demo can be tried at any hour.
# A real deployment keeps quiet hours (静默时段), when only emergencies play, e.g.:
# quiet_hours = "22:00-06:00"
quiet_hours = ""
"""


def prepare_settings(instance: Path) -> bool:
    """Give a brand-new demo instance a settings.toml without quiet hours; True when it was written."""
    if ENV_PREFIX + "QUIET_HOURS" in os.environ or (instance.exists() and any(instance.iterdir())):
        return False
    instance.mkdir(parents=True, exist_ok=True)
    (instance / "settings.toml").write_text(DEMO_SETTINGS, encoding="utf-8")
    return True


def seed(session: Session) -> int:
    """Create the demo county if the database has no regions yet; returns the number of speakers made."""
    if session.scalar(select(func.count()).select_from(Region)):
        return 0
    regions.create_region(session, COUNTY[0], COUNTY[1], "county", None)
    made = 0
    for (town_code, town_name), villages in TOWNSHIPS.items():
        regions.create_region(session, town_code, town_name, "township", COUNTY[0])
        for village_code, village_name in villages:
            regions.create_region(session, village_code, village_name, "village", town_code)
            for suffix, grid_name in GRIDS:
                grid_code = village_code + suffix
                regions.create_region(session, grid_code, f"{village_name}{grid_name}", "grid", village_code)
                session.flush()
                for n in range(1, SPEAKERS_PER_GRID + 1):
                    session.add(
                        Speaker(
                            id=f"spk-{grid_code}-{n}", name=f"{village_name}{grid_name}{n}号音柱", grid_code=grid_code
                        )
                    )
                    made += 1
    audit.record(session, "demo", "demo.seed", speakers=made)
    return made


def write_fleet(platform: Platform, path: Path) -> int:
    """Provision every demo speaker (fresh broker passwords) and write the simulator's fleet file."""
    from broadcast.services.provisioning import provision

    with platform.db.transaction() as session:
        # Only the demo county's own speakers: a real speaker's broker password is never reset by a demo.
        query = select(Speaker.id).where(Speaker.enabled.is_(True), Speaker.id.like(f"spk-{COUNTY[0][:6]}%"))
        ids = list(session.scalars(query.order_by(Speaker.id)))
        configs: list[AgentConfig] = [
            provision(session, platform, sid, state_root=platform.instance / "agents", actor="demo") for sid in ids
        ]
    write_private(path, json.dumps([json.loads(c.to_json()) for c in configs], ensure_ascii=False).encode())
    return len(configs)
