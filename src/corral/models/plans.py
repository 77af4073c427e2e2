"""What customers can order: a plan's resources and price, and the locations offering it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Identity, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint("vcpus > 0 AND memory_mib > 0 AND disk_gib > 0", name="resources_positive"),
        CheckConstraint("traffic_gib >= 0", name="traffic_not_negative"),
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Short, stable, URL-safe name used by the API and WHMCS product mapping, e.g. "s-1-2".
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    disk_gib: Mapped[int] = mapped_column(Integer)
    # Monthly transfer allowance; 0 means unmetered.
    traffic_gib: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Money is always an integer count of the currency's minor unit (cents), never a float.
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PlanLocation(Base):
    """A location where a plan can be ordered."""

    __tablename__ = "plan_locations"

    plan_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True
    )
    location_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True
    )
