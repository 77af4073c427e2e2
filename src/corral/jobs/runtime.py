"""Job runtime. (Placeholder: the jobs work replaces this module.)"""

from __future__ import annotations

from sqlalchemy.engine import URL

from corral.config import Settings


class JobRuntime:
    def __init__(self, url: URL, settings: Settings) -> None:
        self.url = url
        self.settings = settings

    async def open(self) -> None:
        return None

    async def start_worker(self) -> None:
        return None

    async def close(self) -> None:
        return None
