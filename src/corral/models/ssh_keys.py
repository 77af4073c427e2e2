"""SSH public keys a customer keeps on their account to put on new servers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from corral.db.base import Base


class SshKey(Base):
    __tablename__ = "ssh_keys"
    __table_args__ = (Index("uq_ssh_keys_user_fingerprint", "user_id", "fingerprint", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # The key as OpenSSH writes it ("ssh-ed25519 AAAA… comment"), normalised to one line.
    public_key: Mapped[str] = mapped_column(Text)
    key_type: Mapped[str] = mapped_column(String(40))
    # "SHA256:…" as ssh-keygen -l prints it.
    fingerprint: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
