"""Static assets with caching that matches how templates link them.

Templates link assets as ``/static/<path>?v=<content hash>`` (``rendering.static_url``), so a
versioned URL's content never changes and browsers may keep it for a year without asking again.
An unversioned request still revalidates.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class VersionedStaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            versioned = b"v=" in scope.get("query_string", b"")
            response.headers["Cache-Control"] = IMMUTABLE if versioned else REVALIDATE
        return response
