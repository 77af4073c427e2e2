"""Error handlers. (Placeholder: the web shell work replaces this module.)"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from corral.kit.errors import PanelError


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PanelError)
    async def panel_error(request: Request, error: PanelError) -> JSONResponse:
        return JSONResponse({"code": error.code, "message": error.message}, status_code=error.status_code)
