"""create_app(): routers, middleware, error handlers and the lifespan that owns the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from sqlalchemy.engine import URL

from corral import __version__
from corral.auth.cookies import CookieMiddleware
from corral.config import Settings, get_settings
from corral.db.session import create_engine, create_session_factory
from corral.db.url import redacted, resolve_database_url
from corral.demo.fleet import restore_demo_node
from corral.jobs.runtime import JobRuntime
from corral.kit.logging import get_logger
from corral.routers import ROUTERS
from corral.web.encoding import Utf8InputMiddleware
from corral.web.errors import install_error_handlers
from corral.web.middleware import RequestContextMiddleware, SecurityHeadersMiddleware
from corral.web.openapi import install_openapi
from corral.web.protocol import digits_only_ids
from corral.web.rendering import STATIC_DIR
from corral.web.static_files import VersionedStaticFiles

if TYPE_CHECKING:
    from corral.demo.outbox import DemoOutbox

log = get_logger("corral.app")


def create_app(
    settings: Settings | None = None,
    *,
    database_url: URL | None = None,
    run_worker: bool | None = None,
    demo_outbox: DemoOutbox | None = None,
) -> FastAPI:
    """Build the panel. ``database_url`` overrides the configured one (tests); ``run_worker``
    overrides whether a job worker runs inside this process; ``demo_outbox`` (demo mode only)
    catches the email the panel sends and shows it at /demo/outbox."""
    settings = settings or get_settings()
    if demo_outbox is not None and not settings.demo:
        raise ValueError("the demo outbox exists only in demo mode")
    in_process_worker = settings.runs_in_process_worker if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or resolve_database_url(settings)
        engine = create_engine(url, settings)
        app.state.engine = engine
        app.state.session_factory = create_session_factory(engine, settings)
        jobs = JobRuntime(url, settings)
        app.state.jobs = jobs
        await jobs.open()
        # The demo node's hypervisor lives in this process and starts empty: rebuild it from the
        # panel's records before any job or request can touch it.
        demo_hypervisor = await restore_demo_node(app.state.session_factory) if settings.demo else None
        if demo_outbox is not None:
            await demo_outbox.start()  # before the worker, which may have email to send at once
        if in_process_worker:
            await jobs.start_worker()
        log.info("started", database=redacted(url), worker=in_process_worker, version=__version__)
        try:
            yield
        finally:
            await jobs.close()
            if demo_outbox is not None:
                await demo_outbox.stop()
            if demo_hypervisor is not None:
                demo_hypervisor.close()
            await engine.dispose()
            log.info("stopped")

    app = FastAPI(
        title="Corral",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings
    app.state.demo_outbox = demo_outbox

    install_error_handlers(app)
    for router in ROUTERS:
        digits_only_ids(router.routes)
        app.include_router(router)
    install_openapi(app)
    app.mount("/static", VersionedStaticFiles(directory=STATIC_DIR), name="static")

    app.add_middleware(CookieMiddleware, secure=settings.web.secure_cookies)
    # Query strings and form fields that are not UTF-8 are refused before any handler runs.
    app.add_middleware(Utf8InputMiddleware)
    # Added last = runs first: the request id must exist before anything else logs.
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.web.public_url.startswith("https://"))
    app.add_middleware(RequestContextMiddleware, trusted_proxies=settings.web.trusted_proxies)
    return app
