"""The console (管理控制台): server-rendered Chinese pages for township staff, old PCs and phones alike."""

from broadcast.console.views import console

__all__ = ["console"]
