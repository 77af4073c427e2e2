"""Who did something: a person, a background process, or the command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["user", "api_token", "system", "cli"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    label: str
    id: int | None = None
    role: str | None = None

    @classmethod
    def system(cls, process: str) -> Actor:
        """A background job or periodic task, e.g. ``Actor.system("audit.checkpoint")``."""
        return cls(kind="system", label=f"system:{process}")

    @classmethod
    def cli(cls, command: str) -> Actor:
        return cls(kind="cli", label=f"cli:{command}")

    @classmethod
    def user(cls, user_id: int, email: str, role: str) -> Actor:
        return cls(kind="user", label=email, id=user_id, role=role)
