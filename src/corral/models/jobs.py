"""What a background job said while it ran, kept so a page can show it later.

procrastinate's own ``procrastinate_jobs`` table holds each job's status and attempts; this table
adds the log lines and error messages, keyed by procrastinate's job id.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class JobLog(Base):
    __tablename__ = "job_logs"
    __table_args__ = (
        CheckConstraint("level IN ('debug', 'info', 'warning', 'error')", name="level_known"),
        Index("ix_job_logs_job", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # procrastinate's job id. No foreign key: procrastinate prunes its own table on its own schedule.
    job_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    logged_at: Mapped[datetime] = mapped_column(server_default=func.now())
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
