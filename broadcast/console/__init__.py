"""The console (管理控制台): server-rendered Chinese pages for township staff, old PCs and phones alike."""

from broadcast.console import (  # noqa: F401  (pages, banner)
    admin_people,
    admin_views,
    alerts_views,
    approvals_views,
    banner,
    schedules_views,
)
from broadcast.console.views import console

__all__ = ["console"]
