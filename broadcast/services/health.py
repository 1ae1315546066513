"""Liveness, readiness and metrics: what a county's monitoring asks of a running deployment."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, aliased

from broadcast.models import Broadcast, Command, Delivery, Region, Speaker
from broadcast.models.alerts import Alert
from broadcast.models.ops import WorkerHeartbeat
from broadcast.models.schedules import Schedule
from speakers.transport import BrokerAddress

WORKER = "worker"


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and why not."""

    name: str
    ok: bool
    detail: str = ""


def beat(session: Session, *, name: str = WORKER, started_at: float, now: float | None = None) -> None:
    """Record that this worker process is alive (called every few seconds by the lease holder)."""
    now = time.time() if now is None else now
    row = session.get(WorkerHeartbeat, name)
    if row is None:
        row = WorkerHeartbeat(name=name, host="", pid=0, started_at=started_at, beat_at=now)
        session.add(row)
    row.host = socket.gethostname()[:64]
    row.pid = os.getpid()
    row.started_at = started_at
    row.beat_at = now


def heartbeat_age(session: Session, *, name: str = WORKER, now: float | None = None) -> float | None:
    """Seconds since the worker's last heartbeat, or None when no worker ever ran."""
    beat_at = session.scalar(select(WorkerHeartbeat.beat_at).where(WorkerHeartbeat.name == name))
    if beat_at is None:
        return None
    return max(0.0, (time.time() if now is None else now) - beat_at)


def check_database(session: Session, head: str | None) -> Check:
    """The database answers and its schema is the one this code expects."""
    try:
        current = session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as exc:  # any driver error means not ready
        return Check("database", False, str(exc).splitlines()[0][:200])
    if head is not None and current != head:
        return Check("database", False, f"schema {current} is older than {head}: run `broadcast db upgrade`")
    return Check("database", True)


def check_broker(url: str, timeout_s: float = 1.0) -> Check:
    """The broker accepts TCP connections (a cheap probe; the worker's own connection is its heartbeat)."""
    address = BrokerAddress.parse(url)
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout_s):
            return Check("broker", True)
    except OSError as exc:
        return Check("broker", False, f"{address.host}:{address.port}: {exc}")


def check_worker(session: Session, max_age_s: float, now: float | None = None) -> Check:
    """The worker has beaten its heart recently."""
    age = heartbeat_age(session, now=now)
    if age is None:
        return Check("worker", False, "no worker has ever run")
    if age > max_age_s:
        return Check("worker", False, f"last heartbeat {age:.0f} s ago")
    return Check("worker", True)


def metrics_text(session: Session, now: float | None = None) -> bytes:
    """Prometheus text exposition of the fleet, deliveries, alerts, schedules, outbox and worker, fresh per scrape."""
    now = time.time() if now is None else now
    registry = CollectorRegistry()
    speakers = Gauge("broadcast_speakers", "Speakers by township and state.", ["township", "state"], registry=registry)
    for township, online, count in _speakers_by_township(session):
        speakers.labels(township=township or "", state="online" if online else "offline").set(count)
    deliveries = Gauge("broadcast_deliveries", "Deliveries by state.", ["state"], registry=registry)
    for state, count in session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)):
        deliveries.labels(state=state).set(count)
    broadcasts = Gauge(
        "broadcast_broadcasts", "Broadcasts by source and status.", ["source", "status"], registry=registry
    )
    for source, status, count in session.execute(
        select(Broadcast.source, Broadcast.status, func.count()).group_by(Broadcast.source, Broadcast.status)
    ):
        broadcasts.labels(source=source or "", status=status).set(count)
    outbox = Gauge("broadcast_outbox_unpublished", "Live commands not yet published to the broker.", registry=registry)
    outbox.set(
        session.scalar(
            select(func.count()).where(
                Command.published_at.is_(None), Command.superseded_by.is_(None), Command.expires_at > now
            )
        )
        or 0
    )
    alerts = Gauge("broadcast_alerts", "Warnings received, by decision.", ["decision"], registry=registry)
    for decision, count in session.execute(select(Alert.decision, func.count()).group_by(Alert.decision)):
        alerts.labels(decision=decision).set(count)
    schedules = Gauge("broadcast_schedules", "Schedules by state.", ["state"], registry=registry)
    for state, count in session.execute(select(Schedule.state, func.count()).group_by(Schedule.state)):
        schedules.labels(state=state).set(count)
    age = heartbeat_age(session, now=now)
    heartbeat = Gauge(
        "broadcast_worker_heartbeat_age_seconds", "Seconds since the worker's heartbeat.", registry=registry
    )
    heartbeat.set(age if age is not None else float("nan"))
    return generate_latest(registry)


def _speakers_by_township(session: Session) -> list[tuple[str | None, bool, int]]:
    """Speaker counts per (township code, online), walking grid → village → township."""
    grid, village = aliased(Region), aliased(Region)
    rows = session.execute(
        select(village.parent_code, Speaker.online, func.count())
        .join(grid, grid.code == Speaker.grid_code)
        .join(village, village.code == grid.parent_code)
        .group_by(village.parent_code, Speaker.online)
    )
    return [(township, bool(online), count) for township, online, count in rows]
