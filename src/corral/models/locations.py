"""Where servers can run: a data centre or region that customers pick from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Identity, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = (CheckConstraint("country_code ~ '^[A-Z]{2}$'", name="country_code_iso"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Short, stable, URL-safe name used by the API and WHMCS product mapping, e.g. "syd1".
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    country_code: Mapped[str] = mapped_column(String(2))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
