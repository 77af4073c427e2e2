"""What the location pages and API take and give."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from corral.kit.text import SingleLine
from corral.locations.countries import ISO_3166_ALPHA2
from corral.models.locations import Location

MAX_ID = 2**63 - 1  # BIGINT ids: larger ones are a 422, not a database error
# Case-insensitive patterns with the case folded by StringConstraints (which trims and folds
# before checking): the OpenAPI schema then states the rule the server applies. (A BeforeValidator
# doing the folding would hide the pattern from the schema.)
SLUG_PATTERN = r"^[A-Za-z0-9-]{2,40}$"


Slug = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=SLUG_PATTERN),
    Field(description="Short stable key, e.g. `syd1`: 2-40 letters, digits or dashes; stored lower-cased."),
]
Name = Annotated[SingleLine, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
CountryCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$"),
    Field(description="ISO 3166-1 alpha-2 country code, e.g. `AU`."),
]


def _check_country(value: str | None) -> str | None:
    if value is not None and value not in ISO_3166_ALPHA2:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return value


class LocationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    name: Name
    country_code: CountryCode
    # Strict: JSON `"yes"`, `1` or `"true"` is an error, not a yes (forms map their checkbox first).
    active: StrictBool = True

    _country = field_validator("country_code")(_check_country)


class LocationUpdate(BaseModel):
    """Fields to change; the slug is fixed once created (WHMCS products and API clients use it)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    country_code: CountryCode | None = None
    active: StrictBool | None = None

    _country = field_validator("country_code")(_check_country)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude_none=True)


class LocationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    name: str
    country_code: str
    active: bool
    created_at: datetime
    node_count: int = 0


@dataclass(frozen=True)
class LocationRow:
    """A location with how many nodes it holds, for the list page."""

    location: Location
    node_count: int

    def read(self) -> LocationRead:
        return LocationRead.model_validate(self.location).model_copy(update={"node_count": self.node_count})
