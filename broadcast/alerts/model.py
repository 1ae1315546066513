"""The typed form of a CAP 1.2 alert message (what `cap.parse` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPES = ("Public", "Restricted", "Private")
CATEGORIES = (
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
)
RESPONSE_TYPES = ("Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None")
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")


@dataclass(frozen=True)
class Reference:
    """One earlier message named in <references>: sender, identifier and its sent time."""

    sender: str
    identifier: str
    sent: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        """The message's identity (sender, identifier, sent as a UTC instant)."""
        return message_key(self.sender, self.identifier, self.sent)


@dataclass(frozen=True)
class Circle:
    """A circle: centre latitude/longitude (WGS 84) and radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True)
class Area:
    """One <area>: a description and any polygons (lat, lon points), circles and geocodes."""

    desc: str
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[Circle, ...] = ()
    geocodes: tuple[tuple[str, str], ...] = ()  # (valueName, value)
    altitude: float | None = None
    ceiling: float | None = None


@dataclass(frozen=True)
class Info:
    """One <info> block: the event in one language, with its urgency, severity, certainty, texts and areas."""

    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    response_types: tuple[str, ...] = ()
    event_codes: tuple[tuple[str, str], ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    web: str = ""
    contact: str = ""
    areas: tuple[Area, ...] = ()


@dataclass(frozen=True)
class CapAlert:
    """A validated CAP alert message (1.2, or 1.1 read by the same rules)."""

    version: str
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    scope: str
    source: str = ""
    restriction: str = ""
    addresses: str = ""
    codes: tuple[str, ...] = ()
    note: str = ""
    references: tuple[Reference, ...] = ()
    incidents: str = ""
    infos: tuple[Info, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str, str]:
        """The message's identity: same sender, identifier and sent means the same message."""
        return message_key(self.sender, self.identifier, self.sent)


def message_key(sender: str, identifier: str, sent: datetime) -> tuple[str, str, str]:
    """(sender, identifier, sent) with the time as a UTC instant, so +08:00 and Z forms compare equal."""
    return sender, identifier, sent.astimezone(UTC).isoformat()
