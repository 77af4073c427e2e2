"""What the SSH key pages and API take and give."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from corral.kit.text import MultiLine, SingleLine
from corral.ssh_keys.parsing import MAX_INPUT_BYTES

MAX_ID = 2**63 - 1  # BIGINT ids: larger ones are a 422, not a database error
MAX_NAME = 100


class SshKeyCreate(BaseModel):
    """The key is checked by the service (parse_public_key), which says precisely what is wrong."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        SingleLine,
        StringConstraints(strip_whitespace=True, max_length=MAX_NAME),
        Field(description="How the key is shown, 1-100 characters; empty takes the key's comment."),
    ] = ""
    public_key: Annotated[
        MultiLine,
        # The parser's own limit, so the schema states it (a key is ASCII: characters are bytes);
        # the parser says precisely what else is wrong.
        StringConstraints(max_length=MAX_INPUT_BYTES),
        Field(description="One line of a .pub file, e.g. `ssh-ed25519 AAAA… me@laptop`."),
    ]


class SshKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    key_type: str
    fingerprint: str = Field(description="`SHA256:…`, as `ssh-keygen -lf` prints it.")
    public_key: str
    created_at: datetime
