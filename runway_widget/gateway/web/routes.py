"""Every page of the gateway's browser side under one prefix: the public ones, the
instructor's, and what the sign-in needs (the OAuth callback)."""

from __future__ import annotations

from typing import Any

from .admin import admin_routes
from .pages import PageContext, public_routes

__all__ = ["page_routes"]


def page_routes(prefix: str, pages: PageContext) -> list[tuple[str, Any, dict[str, Any]]]:
    """The pages under ``prefix``."""
    args = {"pages": pages}
    return [*public_routes(prefix, args), *admin_routes(prefix, args), *pages.login.routes(prefix)]
