from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthRead(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class CheckRead(BaseModel):
    name: str
    ok: bool
    detail: str


class ReadinessRead(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: list[CheckRead]
