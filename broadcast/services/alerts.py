"""Warnings in: store each CAP message, decide, and start, update, hold or cancel its emergency broadcast."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broadcast.alerts import AlertError, CapAlert, Decision, SpeakerPoint, cap, decide, resolve
from broadcast.alerts.template import cancel_text, message_text
from broadcast.errors import BroadcastError, not_found
from broadcast.foreground import FOREGROUND
from broadcast.models import Alert, Broadcast, Command, Delivery, Region, Speaker, User
from broadcast.services import broadcasts, clips, commands, regions
from broadcast.services.alert_records import Outcome, note, policy_table, reject, system_user
from broadcast.services.alert_tone import tone_clip
from media import MediaError

if TYPE_CHECKING:
    from broadcast.platform import Platform

logger = logging.getLogger(__name__)
OPEN_STATES = ("queued", "sent")


def _row(alert: CapAlert, decision: Decision, data: bytes, source: str) -> Alert:
    info = decision.info
    expires = info.expires.timestamp() if info is not None and info.expires is not None else None
    codes = [v for _n, v in info.event_codes] if info is not None else []
    return Alert(
        identifier=alert.identifier[:255],
        sender=alert.sender[:255],
        sent=alert.sent,
        sent_key=alert.key[2],
        status=alert.status,
        msg_type=alert.msg_type,
        references=[list(r.key) for r in alert.references],
        event=info.event[:200] if info else None,
        event_code=codes[0][:32] if codes else None,
        level=decision.level,
        severity=info.severity if info else None,
        urgency=info.urgency if info else None,
        certainty=info.certainty if info else None,
        language=info.language[:16] if info else None,
        headline=info.headline if info else None,
        expires_at=expires,
        decision=decision.action,
        reason=decision.reason[:200],
        state="logged",
        audience=decision.audience,
        region_codes=[],
        speaker_ids=[],
        source=source[:64],
        raw=data.decode("utf-8", errors="replace"),
    )


def ingest(
    session: Session,
    platform: Platform,
    data: bytes,
    *,
    actor: str,
    source: str,
    address: str | None = None,
    now: float | None = None,
) -> Outcome:
    """Take one CAP message: refuse it (audit only), or store it with its decision and act on it."""
    now = time.time() if now is None else now
    table = policy_table(platform)
    try:
        alert = cap.parse(data)
    except AlertError as error:
        reject(session, data, error, actor=actor, source=source, address=address)
        raise
    existing = _find(session, alert.key)
    if existing is None:
        decision = decide(alert, now=datetime.fromtimestamp(now, UTC), duplicate=False, table=table)
        row = _row(alert, decision, data, source)
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # the same message arrived through another path a moment ago
            session.rollback()
            existing = _find(session, alert.key)
            if existing is None:
                raise
    if existing is not None:
        note(session, existing, "duplicate", "duplicate", actor, source=source)
        session.commit()
        return Outcome(existing.id, "duplicate", "duplicate", existing.broadcast_id)
    note(
        session,
        row,
        "received",
        f"{alert.status}/{alert.msg_type}",
        actor,
        source=source,
        warnings=list(alert.warnings),
    )
    if decision.action == "cancelled":
        _cancel(session, platform, row, decision, actor, now)
    elif decision.action in ("broadcast", "updated", "held"):
        _plan(session, platform, row, decision, now)
        if row.decision == "held":
            row.state = "held"
            note(session, row, "held", row.reason, actor)
        else:
            launch(session, platform, row, system_user(session), actor, now)
    else:
        note(session, row, decision.action, decision.reason, actor)
    session.commit()
    return Outcome(row.id, row.decision, row.reason, row.broadcast_id)


def _find(session: Session, key: tuple[str, str, str]) -> Alert | None:
    sender, identifier, sent_key = key
    query = select(Alert).where(Alert.sender == sender, Alert.identifier == identifier, Alert.sent_key == sent_key)
    return session.scalar(query)


def _plan(session: Session, platform: Platform, row: Alert, decision: Decision, now: float) -> None:
    """Resolve the area and compose the text; an area that resolves to nothing holds the alert."""
    assert decision.info is not None
    settings = platform.settings
    tree = dict(session.execute(select(Region.code, Region.parent_code)).tuples().all())
    areas = decision.info.areas
    # Speakers' coordinates only where a polygon or circle needs them: a geocode names regions.
    points = (
        [
            SpeakerPoint(sid, lat, lon)
            for sid, lat, lon in session.execute(
                select(Speaker.id, Speaker.latitude, Speaker.longitude).where(
                    Speaker.enabled.is_(True), Speaker.latitude.is_not(None), Speaker.longitude.is_not(None)
                )
            ).tuples()
        ]
        if any(area.polygons or area.circles for area in areas)
        else []
    )
    names = [n.strip() for n in str(settings.get("ALERT_GEOCODE_NAMES", "")).split(",") if n.strip()]
    area = resolve(areas, tree, points, names)
    row.region_codes, row.speaker_ids = area.region_codes, area.speaker_ids
    row.text = message_text(decision.info, status=row.status, level=decision.level)
    if area.empty:
        row.decision, row.reason = "held", "area_unresolved"
    elif row.audience == "test":
        row.region_codes, row.speaker_ids = [], drill_speakers(session, area.targets)
        if not row.speaker_ids:
            row.decision, row.reason = "held", "no_test_speakers"


def drill_speakers(session: Session, targets: list[str]) -> list[str]:
    """The speakers flagged for tests (演练终端) among the targets' speakers."""
    tree = regions.load_tree(session)
    chosen = set(targets)
    rows = session.execute(
        select(Speaker.id, Speaker.grid_code).where(Speaker.enabled.is_(True), Speaker.test_speaker.is_(True))
    ).tuples()
    return sorted(sid for sid, grid in rows if sid in chosen or set(regions.ancestors(tree, grid)) & chosen)


def launch(
    session: Session, platform: Platform, row: Alert, user: User, actor: str, now: float, *, clip_id: int | None = None
) -> None:
    """Stop what this alert replaces, sound the attention tone at once, then send the speech (or `clip_id`).

    The tone is a broadcast of its own, sent before the speech is synthesized: speakers hold the tone's
    clip in their cache (same bytes every time), so it sounds while the server renders the speech, and
    the speech, an equal-priority emergency started later, waits in each speaker's queue behind it.
    An Update of an alert still open swaps only the speech: no second tone. The receipt writer and consumer
    of this process stand aside meanwhile (`broadcast.foreground`).
    """
    with FOREGROUND.running():
        _launch(session, platform, row, user, actor, now, clip_id=clip_id)


def _launch(
    session: Session, platform: Platform, row: Alert, user: User, actor: str, now: float, *, clip_id: int | None
) -> None:
    previous = _chain(session, row) if row.msg_type == "Update" else []
    if row.decision == "updated" and not previous:
        row.decision, row.reason = "broadcast", row.reason + ";update_of_unknown"
    settings = platform.settings
    targets = row.region_codes + row.speaker_ids
    volume = int(settings.get("ALERT_VOLUME", 100))
    speech_start: float | None = None  # an Update's speech: the usual lead (its tone, if any, is the old one's)
    speech_lead: float | None = None
    try:
        if not previous:
            lead_s = int(settings.get("ALERT_TONE_LEAD_MS", 700)) / 1000
            tone_row = tone_clip(session, platform)
            tone = broadcasts.create(
                session,
                user,
                platform.rules,
                clip_id=tone_row.id,
                targets=targets,
                priority="emergency",
                volume=volume,
                source="alert",
                now=now,
                lead_s=lead_s,
            )
            row.tone_broadcast_id, row.state = tone.id, "active"
            # Every speaker holds the tone (snapshot keep list): its command carries hash and URL, no bytes,
            # so it needs a shorter lead than a clip some speakers must fetch first.
            send(session, platform, [], tone, inline=False, lead_s=lead_s)
            # The speech is due the instant the tone ends (after send: its start is final), so each speaker
            # that has it by then begins it without a gap; synthesized later, it follows the tone's short lead.
            speech_start, speech_lead = tone.start_at + tone_row.duration_ms / 1000, lead_s
        repeat = 1  # a clip chosen by hand plays as it is
        if clip_id is None:
            # Spoken once in the file and repeated by the speakers: each downloads a third of the bytes.
            repeat = max(1, min(int(settings.get("ALERT_REPEAT", 3)), 10))
            store, media = platform.media_store, platform.media
            clip_id = clips.from_text(session, store, media, row.text, user=user, title=f"预警：{row.event}").id
        item = broadcasts.create(
            session,
            user,
            replace(platform.rules, max_repeat=max(platform.rules.max_repeat, repeat)),  # routine caps aside
            clip_id=clip_id,
            repeat=repeat,
            targets=targets,
            priority="emergency",
            volume=volume,
            source="alert",
            start_at=None if speech_start is None else max(speech_start, time.time()),  # never "in the past"
            lead_s=speech_lead,
        )
    except (BroadcastError, MediaError) as error:  # no enabled speakers there, a target outside the user's region...
        # Nothing was written but perhaps a clip or the tone: the alert and its decisions are kept.
        row.decision, row.reason, row.state = "held", f"not_sent:{error.code}", "held"
        note(session, row, "held", row.reason, actor, error=error.en[:200])
        return
    row.broadcast_id, row.state = item.id, "active"
    stops = [stop_alert(session, old, row, "updated", actor, now, tone=False) for old in previous]
    speakers = sum(broadcasts.counts(session, item.id).values())
    note(session, row, row.decision, row.reason, actor, broadcast_id=item.id, speakers=speakers)
    send(session, platform, [s for stop in stops for s in stop], item, lead_s=speech_lead)


def _chain(session: Session, row: Alert) -> list[Alert]:
    """Open alerts this Update or Cancel ends: those it references, and updates of those it references."""
    refs = {tuple(r) for r in row.references}
    if not refs:
        return []
    open_rows = session.scalars(select(Alert).where(Alert.state.in_(("active", "held")), Alert.id != row.id))
    return [
        a
        for a in open_rows
        if (a.sender, a.identifier, a.sent_key) in refs or any(tuple(r) in refs for r in a.references)
    ]


def stop_alert(
    session: Session, old: Alert, by: Alert, action: str, actor: str, now: float, *, tone: bool = True
) -> list[Command]:
    """End an open alert: close its undelivered deliveries and issue stops for its speech (and its tone).

    With `tone` (a Cancel), every broadcast of the alert's chain is stopped: the tones of the alerts it
    updated too, so a Cancel that follows an Update within the first alert's tone silences that tone.
    """
    chain = [old, *_superseded_by(session, old)] if tone else []
    old.state = "superseded" if action == "updated" else "cancelled"
    old.replaced_by = by.id
    note(session, old, action, f"by_alert:{by.id}", actor)
    ids = [old.broadcast_id]
    if tone:  # the speeches of the updated alerts were stopped by the Update that replaced them
        ids += [a.tone_broadcast_id for a in chain]
    stops = []
    for item in (session.get(Broadcast, i) for i in dict.fromkeys(ids) if i is not None):
        if item is None:
            continue
        # Queued or unacknowledged deliveries must not be re-sent by the outbox once the alert is over.
        session.execute(
            update(Delivery)
            .where(Delivery.broadcast_id == item.id, Delivery.state.in_(OPEN_STATES))
            .values(state="failed", reason=f"{old.state}:alert {by.id}", next_resend_at=None)
        )
        stop = commands.issue(
            session,
            kind="stop",
            body={"broadcast_id": str(item.id)},
            targets=item.wire_targets,
            expires_at=now + _stop_ttl(item, now),
        )
        stops.append(stop)
    return stops


def _superseded_by(session: Session, row: Alert) -> list[Alert]:
    """The alerts `row` replaced through Updates, and those they replaced, back to the first."""
    found: list[Alert] = []
    frontier = [row.id]
    while frontier:
        query = select(Alert).where(Alert.replaced_by.in_(frontier), Alert.state == "superseded")
        rows = [a for a in session.scalars(query) if a not in found and a is not row]
        found += rows
        frontier = [a.id for a in rows]
    return found


def _stop_ttl(item: Broadcast, now: float) -> float:
    """How long a stop command stays valid: as long as the broadcast it stops could still be playing."""
    return max(60.0, item.expires_at - now)


def send(
    session: Session,
    platform: Platform,
    stops: list[Command],
    item: Broadcast | None,
    *,
    inline: bool = True,
    lead_s: float | None = None,
) -> None:
    """Commit, publish the stops, then the new broadcast (the worker publishes what the broker misses)."""
    from broadcast.services.sending import send_broadcast

    session.commit()
    if stops:
        try:
            messenger = platform.messenger()
        except Exception as exc:  # the worker republishes unpublished commands
            logger.warning("broker unavailable, %d stop command(s) wait for the worker: %s", len(stops), exc)
        else:
            for command in stops:
                commands.send(platform.db, messenger, command)
    if item is not None:
        send_broadcast(session, platform, item, inline=inline, lead_s=lead_s)


def _cancel(session: Session, platform: Platform, row: Alert, decision: Decision, actor: str, now: float) -> None:
    """Stop every open alert the Cancel names (on every speaker), then play the 解除 notice if configured."""
    ended = _chain(session, row)
    stops = [s for old in ended for s in stop_alert(session, old, row, "cancelled", actor, now)]
    row.state = "done"
    if not ended:
        row.reason = "nothing_open"
    note(session, row, "cancelled", row.reason, actor, ended=[a.id for a in ended])
    item = None
    sounded = [a for a in ended if a.broadcast_id is not None]
    if sounded and int(platform.settings.get("ALERT_CANCEL_NOTICE", 1)):
        item = _notice(session, platform, row, sounded, decision, actor, now)
    send(session, platform, stops, item)


def _notice(
    session: Session, platform: Platform, row: Alert, ended: list[Alert], decision: Decision, actor: str, now: float
) -> Broadcast | None:
    first = ended[0]
    level = decision.level or first.level
    info = decision.info
    text = cancel_text(info, status=row.status, level=level) if info else f"现在解除{first.event or ''}预警。"
    targets = sorted({t for a in ended for t in a.region_codes + a.speaker_ids})
    user = system_user(session)
    try:
        clip = clips.from_text(session, platform.media_store, platform.media, text, user=user, title="预警解除")
        item = broadcasts.create(
            session, user, platform.rules, clip_id=clip.id, targets=targets, priority="urgent", source="alert", now=now
        )
    except BroadcastError as error:  # quiet hours refuse a notice that is not an emergency
        note(session, row, "cancelled", f"no_notice:{error.code}", actor)
        return None
    row.text, row.broadcast_id, row.region_codes = text, item.id, targets
    return item


def get(session: Session, alert_id: object) -> Alert:
    """An alert by id, or a not-found error."""
    try:
        ident = int(str(alert_id))
    except ValueError:
        raise not_found("预警", "Alert", alert_id) from None
    row = session.get(Alert, ident)
    if row is None:
        raise not_found("预警", "Alert", alert_id)
    return row
