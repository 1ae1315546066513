"""The warning service's pure rules: CAP parsing and validation, policy, area, spoken text, sensor triggers.

No Flask and no SQLAlchemy here: services in `broadcast/services/alerts.py` feed these plain data.
"""

from broadcast.alerts.area import AreaResult, SpeakerPoint, resolve
from broadcast.alerts.cap import MAX_BYTES, parse
from broadcast.alerts.errors import AlertError
from broadcast.alerts.model import Area, CapAlert, Circle, Info, Reference
from broadcast.alerts.policy import Decision, PolicyTable, choose_info, decide
from broadcast.alerts.template import cancel_text, message_text

__all__ = [
    "MAX_BYTES",
    "AlertError",
    "Area",
    "AreaResult",
    "CapAlert",
    "Circle",
    "Decision",
    "Info",
    "PolicyTable",
    "Reference",
    "SpeakerPoint",
    "cancel_text",
    "choose_info",
    "decide",
    "message_text",
    "parse",
    "resolve",
]
