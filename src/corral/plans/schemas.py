"""What the plan pages and API take and give.

A price is typed as decimal text (``"12.50"``) and stored as integer minor units of its currency;
JSON numbers are refused for it, so no float ever carries money. Price and currency travel
together: the number of decimal places allowed depends on the currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from corral.locations.schemas import MAX_ID, Name, Slug
from corral.models.locations import Location
from corral.models.plans import Plan
from corral.plans.money import ISO_4217, PriceError, format_price, parse_price, price_amount

MAX_LOCATIONS = 500


def _price_text(value: Any) -> Any:
    """Whole JSON numbers are exact and accepted; fractional ones are floats and refused."""
    if isinstance(value, bool):
        return value  # left for the str check to refuse
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise ValueError('Send the price as text, e.g. "12.50": floating-point numbers lose cents')
    return value


Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$"),
    Field(description="ISO 4217 currency code, e.g. `USD`, `EUR`, `JPY`."),
]
PriceText = Annotated[
    str,
    BeforeValidator(_price_text),
    StringConstraints(strip_whitespace=True, max_length=40),
    Field(
        description=(
            'Monthly price as decimal text in the currency, e.g. `"12.50"` USD or `"1200"` JPY; '
            "at most the currency's number of decimal places. Sent together with `currency`."
        ),
        examples=["12.50"],
    ),
]
VCpus = Annotated[int, Field(ge=1, le=512, description="Virtual CPUs.")]
MemoryMib = Annotated[int, Field(ge=128, le=16 * 1024 * 1024, description="Memory in MiB.")]
DiskGib = Annotated[int, Field(ge=1, le=1024 * 1024, description="Disk in GiB.")]
TrafficGib = Annotated[
    int, Field(ge=0, le=2**31 - 1, description="Monthly traffic allowance in GiB; 0 means unmetered.")
]
LocationIds = Annotated[
    list[Annotated[int, Field(ge=1, le=MAX_ID)]],
    Field(max_length=MAX_LOCATIONS, description="Ids of the locations that offer the plan."),
]


def _check_currency(value: str | None) -> str | None:
    if value is not None and value not in ISO_4217:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


def _check_price(value: str | None, info: ValidationInfo) -> str | None:
    """The price's decimal places depend on the currency, validated just before it."""
    if "currency" not in info.data:
        return value  # the currency itself was refused; that error says what to fix
    currency = info.data["currency"]
    if value is None:
        if currency is not None:
            raise ValueError("Send the price with the currency: they change together")
        return None
    if currency is None:
        raise ValueError("Send the currency with the price: they change together")
    try:
        parse_price(value, currency)
    except PriceError as error:
        raise ValueError(str(error)) from error
    return value


class _PlanFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @property
    def price_minor(self) -> int | None:
        price: str | None = getattr(self, "price", None)
        currency: str | None = getattr(self, "currency", None)
        return None if price is None or currency is None else parse_price(price, currency)


class PlanCreate(_PlanFields):
    slug: Slug
    name: Name
    vcpus: VCpus
    memory_mib: MemoryMib
    disk_gib: DiskGib
    traffic_gib: TrafficGib = 0
    # Before the price: the price's check reads it.
    currency: Currency
    price: PriceText
    # Strict: JSON `"yes"`, `1` or `"true"` is an error, not a yes (forms map their checkbox first).
    active: StrictBool = True
    location_ids: LocationIds = []

    _currency = field_validator("currency")(_check_currency)
    _price = field_validator("price")(_check_price)

    def values(self) -> dict[str, Any]:
        """The plan's column values (price in minor units), for the row and the audit log."""
        data = self.model_dump(exclude={"price", "location_ids"})
        data["price_minor"] = self.price_minor
        return data


class PlanUpdate(_PlanFields):
    """Fields to change. ``price`` and ``currency`` are sent together; ``location_ids`` replaces
    the whole set of locations offering the plan."""

    slug: Slug | None = None
    name: Name | None = None
    vcpus: VCpus | None = None
    memory_mib: MemoryMib | None = None
    disk_gib: DiskGib | None = None
    traffic_gib: TrafficGib | None = None
    currency: Currency | None = None
    # Checked even when left out, so a currency without a price is refused.
    price: Annotated[PriceText | None, Field(validate_default=True)] = None
    active: StrictBool | None = None
    location_ids: LocationIds | None = None

    _currency = field_validator("currency")(_check_currency)
    _price = field_validator("price")(_check_price)

    def changes(self) -> dict[str, Any]:
        """Column values to set (price in minor units); ``location_ids`` is handled apart."""
        data = self.model_dump(exclude_unset=True, exclude_none=True, exclude={"price", "location_ids"})
        if self.price_minor is not None:
            data["price_minor"] = self.price_minor
        return data


class PlanPriceRead(BaseModel):
    minor: int = Field(description="Integer count of the currency's minor unit (cents).")
    currency: str
    amount: str = Field(description='Decimal text with the currency\'s digits, e.g. "12.50".')
    formatted: str = Field(description='For display, e.g. "12.50 USD".')

    @classmethod
    def of(cls, price_minor: int, currency: str) -> PlanPriceRead:
        return cls(
            minor=price_minor,
            currency=currency,
            amount=price_amount(price_minor, currency),
            formatted=format_price(price_minor, currency),
        )


class PlanLocationRead(BaseModel):
    """A location offering a plan."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    name: str
    country_code: str


class PlanAdminLocationRead(PlanLocationRead):
    active: bool


class _PlanReadFields(BaseModel):
    """What every read model of a plan starts with."""

    id: int
    slug: str
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    traffic_gib: int = Field(description="Monthly traffic in GiB; 0 means unmetered.")
    price: PlanPriceRead


class PlanRead(_PlanReadFields):
    """A plan as staff see it, inactive ones and inactive locations included."""

    active: bool
    locations: list[PlanAdminLocationRead]
    server_count: int = Field(description="Servers ordered on the plan (a used plan cannot be deleted).")
    created_at: datetime
    updated_at: datetime


class PlanOfferRead(_PlanReadFields):
    """An orderable plan: active, with the active locations offering it."""

    locations: list[PlanLocationRead]


@dataclass(frozen=True)
class _PlanView:
    """A plan loaded for showing: its price as text, and the fields every plan read model shares."""

    plan: Plan

    @property
    def price_text(self) -> str:
        return format_price(self.plan.price_minor, self.plan.currency)

    def _read_fields(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "id": plan.id,
            "slug": plan.slug,
            "name": plan.name,
            "vcpus": plan.vcpus,
            "memory_mib": plan.memory_mib,
            "disk_gib": plan.disk_gib,
            "traffic_gib": plan.traffic_gib,
            "price": PlanPriceRead.of(plan.price_minor, plan.currency),
        }


@dataclass(frozen=True)
class PlanRow(_PlanView):
    """A plan with its locations and how many servers use it, for the admin pages and API."""

    locations: list[Location] = field(default_factory=list)
    server_count: int = 0

    def read(self) -> PlanRead:
        return PlanRead(
            **self._read_fields(),
            active=self.plan.active,
            locations=[PlanAdminLocationRead.model_validate(location) for location in self.locations],
            server_count=self.server_count,
            created_at=self.plan.created_at,
            updated_at=self.plan.updated_at,
        )


@dataclass(frozen=True)
class OrderablePlan(_PlanView):
    """An active plan and the active locations it can be ordered in (never empty)."""

    locations: list[Location]

    def read(self) -> PlanOfferRead:
        return PlanOfferRead(
            **self._read_fields(),
            locations=[PlanLocationRead.model_validate(location) for location in self.locations],
        )
