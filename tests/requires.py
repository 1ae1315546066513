"""One rule for tests that need a tool or service: skip on a developer's machine, fail in CI (CI=true)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: object, reason: str) -> None:
    """Skip when `condition` is false, or fail when running in CI, where every tool and service must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI: required but missing: {reason}", pytrace=False)
    pytest.skip(reason)
