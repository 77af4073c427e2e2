"""Every router of the panel, in the order they are matched. Adding a domain's pages or API
means adding its router here; app.create_app() includes them all."""

from __future__ import annotations

from fastapi import APIRouter

from corral.admin.api import router as admin_api_router
from corral.admin.views import router as admin_views_router
from corral.auth.api import router as account_api_router
from corral.auth.enrolment_views import router as enrolment_router
from corral.auth.passkey_views import router as passkey_router
from corral.auth.security_views import router as security_router
from corral.auth.step_up_views import router as step_up_router
from corral.auth.totp_views import router as totp_router
from corral.auth.views import router as auth_router
from corral.consoles.views import router as consoles_router
from corral.dashboard.views import router as dashboard_router
from corral.demo.views import router as demo_router
from corral.ipam.api import router as ipam_api_router
from corral.ipam.views import router as ipam_views_router
from corral.locations.api import router as locations_api_router
from corral.locations.views import router as locations_views_router
from corral.node_keys.api import router as node_keys_api_router
from corral.node_keys.views import router as node_keys_views_router
from corral.nodes.api import router as nodes_api_router
from corral.nodes.views import router as nodes_views_router
from corral.ops.api import router as ops_router
from corral.panel_settings.api import router as panel_settings_api_router
from corral.panel_settings.views import router as panel_settings_views_router
from corral.plans.api import admin_router as plans_admin_api_router
from corral.plans.api import router as plans_api_router
from corral.plans.views import router as plans_views_router
from corral.servers.admin_views import router as servers_admin_router
from corral.servers.api import router as servers_api_router
from corral.servers.cancellation_api import router as server_cancellation_api_router
from corral.servers.cancellation_views import router as server_cancellation_views_router
from corral.servers.fleet_api import router as fleet_servers_api_router
from corral.servers.fleet_views import router as fleet_servers_views_router
from corral.servers.views import router as servers_views_router
from corral.ssh_keys.api import router as ssh_keys_api_router
from corral.ssh_keys.views import router as ssh_keys_views_router
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
    demo_router,
    users_router,
    users_api_router,
    security_router,
    totp_router,
    enrolment_router,
    passkey_router,
    step_up_router,
    account_api_router,
    admin_views_router,
    admin_api_router,
    ipam_views_router,
    ipam_api_router,
    locations_views_router,
    locations_api_router,
    nodes_views_router,
    nodes_api_router,
    node_keys_views_router,
    node_keys_api_router,
    plans_views_router,
    plans_api_router,
    plans_admin_api_router,
    templates_views_router,
    templates_api_router,
    servers_admin_router,
    server_cancellation_views_router,
    server_cancellation_api_router,
    fleet_servers_views_router,
    fleet_servers_api_router,
    consoles_router,
    servers_views_router,
    servers_api_router,
    ssh_keys_views_router,
    ssh_keys_api_router,
    panel_settings_views_router,
    panel_settings_api_router,
)
