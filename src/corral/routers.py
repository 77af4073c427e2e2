"""Every router of the panel, in the order they are matched. Adding a domain's pages or API
means adding its router here; app.create_app() includes them all."""

from __future__ import annotations

from fastapi import APIRouter

from corral.admin.api import router as admin_api_router
from corral.admin.views import router as admin_views_router
from corral.auth.api import router as account_api_router
from corral.auth.security_views import router as security_router
from corral.auth.totp_views import router as totp_router
from corral.auth.views import router as auth_router
from corral.dashboard.views import router as dashboard_router
from corral.ipam.api import router as ipam_api_router
from corral.ipam.views import router as ipam_views_router
from corral.locations.api import router as locations_api_router
from corral.locations.views import router as locations_views_router
from corral.nodes.api import router as nodes_api_router
from corral.nodes.views import router as nodes_views_router
from corral.ops.api import router as ops_router
from corral.servers.admin_views import router as servers_admin_router
from corral.templates.api import router as templates_api_router
from corral.templates.views import router as templates_views_router
from corral.users.api import router as users_api_router
from corral.users.views import router as users_router
from corral.web.views import router as web_router

ROUTERS: tuple[APIRouter, ...] = (
    ops_router,
    web_router,
    auth_router,
    dashboard_router,
    users_router,
    users_api_router,
    security_router,
    totp_router,
    account_api_router,
    admin_views_router,
    admin_api_router,
    ipam_views_router,
    ipam_api_router,
    locations_views_router,
    locations_api_router,
    nodes_views_router,
    nodes_api_router,
    templates_views_router,
    templates_api_router,
    servers_admin_router,
)
