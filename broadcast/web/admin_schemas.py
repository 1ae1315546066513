"""JSON Schemas of the county-management API's request bodies (validated by `declare`, shown in OpenAPI)."""

from __future__ import annotations

from typing import Any

from broadcast.models import ROLES

TEXT_OR_NULL = {"type": ["string", "null"]}
COORDINATE = {"type": ["number", "string", "null"], "x-error-code": "invalid_coordinate"}


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": required or [], "properties": properties, "additionalProperties": False}


REGION_CREATE = _obj(
    {
        "code": {"type": "string", "maxLength": 32, "x-error-code": "invalid_code"},
        "name": {"type": "string", "maxLength": 100, "x-error-code": "invalid_name"},
        "level": {"type": "string", "maxLength": 16, "x-error-code": "invalid_level"},
        "parent_code": {**TEXT_OR_NULL, "maxLength": 32, "x-error-code": "invalid_parent"},
    },
    ["code", "name", "level"],
)
REGION_UPDATE = _obj(
    {
        "name": {"type": "string", "maxLength": 100, "x-error-code": "invalid_name"},
        "parent_code": {"type": "string", "maxLength": 32, "x-error-code": "invalid_parent"},
    }
)
_SPEAKER_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100, "x-error-code": "invalid_name"},
    "grid_code": {"type": "string", "maxLength": 32, "x-error-code": "unknown_grid"},
    "latitude": COORDINATE,
    "longitude": COORDINATE,
    "address": {**TEXT_OR_NULL, "x-error-code": "too_long"},
    "notes": {**TEXT_OR_NULL, "x-error-code": "too_long"},
    "sim_number": {**TEXT_OR_NULL, "x-error-code": "too_long"},
    "test_speaker": {"type": ["boolean", "string", "integer"], "x-error-code": "invalid_flag"},
    "volume": {"type": "integer", "minimum": 0, "maximum": 100, "x-error-code": "invalid_volume"},
}
SPEAKER_CREATE = _obj(
    {"id": {"type": "string", "maxLength": 64, "x-error-code": "invalid_speaker_id"}, **_SPEAKER_FIELDS},
    ["id", "name", "grid_code"],
)
SPEAKER_UPDATE = _obj({**_SPEAKER_FIELDS, "enabled": {"type": "boolean", "x-error-code": "invalid_enabled"}})
IMPORT_FORM = {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}
IMPORT_QUERY = {"dry_run": {"type": "string", "enum": ["0", "1", "true", "yes"]}}
USER_CREATE = _obj(
    {
        "username": {"type": "string", "maxLength": 64, "x-error-code": "invalid_username"},
        "role": {"type": "string", "enum": list(ROLES), "x-error-code": "invalid_role"},
        "region_code": {**TEXT_OR_NULL, "maxLength": 32, "x-error-code": "region_required"},
    },
    ["username", "role"],
)
USER_UPDATE = _obj(
    {
        "role": {"type": "string", "enum": list(ROLES), "x-error-code": "invalid_role"},
        "region_code": {**TEXT_OR_NULL, "maxLength": 32, "x-error-code": "region_required"},
        "active": {"type": "boolean", "x-error-code": "invalid_active"},
    }
)
PASSWORD_CHANGE = _obj(
    {
        "old": {"type": "string", "maxLength": 1024, "x-error-code": "wrong_password"},
        "new": {"type": "string", "maxLength": 1024, "x-error-code": "weak_password"},
    },
    ["old", "new"],
)
