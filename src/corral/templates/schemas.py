"""What the OS template pages and API take and give."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from corral.kit.text import SingleLine
from corral.models.nodes import Node, NodeTemplate, OsTemplate

MAX_ID = 2**63 - 1
MAX_DISK_GIB = 65_536

# Folded to lower case by StringConstraints, so the schema states the pattern (see locations.schemas).
TemplateSlug = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{1,59}$"),
    Field(description="Stable key, e.g. `debian-12`: 2-60 letters, digits, dots or dashes; kept lower-case."),
]
TemplateName = Annotated[SingleLine, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
OsFamily = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z][A-Za-z0-9-]{1,39}$"),
    Field(description="e.g. `debian`, `ubuntu`, `almalinux`; stored lower-cased."),
]
OsVersion = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$"),
    Field(description="e.g. `12`, `24.04 LTS`."),
]
MinDisk = Annotated[int, Field(ge=1, le=MAX_DISK_GIB, description="Smallest disk it fits on, in GiB.")]
# A Linux login name, as cloud-init creates it.
DefaultUser = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
# A volume name in the node's storage pool: no path, so it can never point outside the pool.
ImageName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$"),
    Field(description="The template's volume in the node's storage pool, e.g. `debian-12.qcow2`."),
]


def default_image_ref(slug: str) -> str:
    return f"{slug}.qcow2"


class OsTemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: TemplateSlug
    name: TemplateName
    os_family: OsFamily
    os_version: OsVersion
    min_disk_gib: MinDisk = 1
    # Strict: JSON `"yes"`, `1` or `"true"` is an error, not a yes (forms map their checkbox first).
    cloud_init: StrictBool = True
    default_user: DefaultUser = "root"
    active: StrictBool = True


class OsTemplateUpdate(BaseModel):
    """Fields to change; the slug is fixed once created."""

    model_config = ConfigDict(extra="forbid")

    name: TemplateName | None = None
    os_family: OsFamily | None = None
    os_version: OsVersion | None = None
    min_disk_gib: MinDisk | None = None
    cloud_init: StrictBool | None = None
    default_user: DefaultUser | None = None
    active: StrictBool | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


class NodeTemplateCreate(BaseModel):
    """Put a template on a node: ``image_ref`` defaults to ``<slug>.qcow2``."""

    model_config = ConfigDict(extra="forbid")

    node_id: int = Field(ge=1, le=MAX_ID)
    image_ref: ImageName | None = None


class OsTemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    name: str
    os_family: str
    os_version: str
    min_disk_gib: int
    cloud_init: bool
    default_user: str
    active: bool
    created_at: datetime


class TemplateNodeRead(BaseModel):
    """One node the template is listed on, and whether its image was found there."""

    node_id: int
    node_name: str
    node_status: str
    image_ref: str
    present: bool
    checked_at: datetime | None


class OsTemplateDetailRead(OsTemplateRead):
    nodes: list[TemplateNodeRead] = Field(default_factory=list)


@dataclass(frozen=True)
class TemplateRow:
    """A template for the list page with how many nodes hold its image."""

    template: OsTemplate
    nodes_present: int
    nodes_listed: int


@dataclass(frozen=True)
class TemplateDetail:
    template: OsTemplate
    links: list[tuple[NodeTemplate, Node]]

    def read(self) -> OsTemplateDetailRead:
        base = OsTemplateRead.model_validate(self.template).model_dump()
        nodes = [
            TemplateNodeRead(
                node_id=node.id,
                node_name=node.name,
                node_status=node.status,
                image_ref=link.image_ref,
                present=link.present,
                checked_at=link.checked_at,
            )
            for link, node in self.links
        ]
        return OsTemplateDetailRead(**base, nodes=nodes)
