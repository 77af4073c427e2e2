"""What the node SSH key pages and API take and give. The private half never comes out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_ID = 2**63 - 1
KeyName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"),
    Field(description="1-100 letters, digits, dots, dashes or underscores, e.g. `syd1-nodes`."),
]


class NodeKeyCreate(BaseModel):
    """Make a new Ed25519 key pair; the panel keeps the private half sealed."""

    model_config = ConfigDict(extra="forbid")

    name: KeyName


class NodeKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    public_key: str = Field(description="One `authorized_keys` line: add it for the node's login.")
    fingerprint: str = Field(description="SHA256 fingerprint, as `ssh-keygen -lf` prints it.")
    created_at: datetime
    nodes: int = Field(default=0, description="How many nodes log in with this key.")
