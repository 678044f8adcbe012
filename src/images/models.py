"""The images service's extensions and its one table.

A row is the image's metadata; the bytes live in the object store under ``object_key``.
``status`` is 'pending' from the moment an upload starts until its object is stored, and
'committed' after: only committed rows are ever shown (see images.routes, upload order).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()

PENDING = "pending"
COMMITTED = "committed"


@dataclass(frozen=True)
class Owner:
    """Who a request acts for, as the token (signed by the auth service) says."""

    id: int
    username: str


class Image(db.Model):
    __tablename__ = "images"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'committed')", name="images_status_check"),
        Index("images_user_filename_key", "user_id", "filename", unique=True),
        Index("images_user_created_idx", "user_id", "created_at", "id"),
        Index("images_status_created_idx", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    filename: Mapped[str] = mapped_column(String(64), nullable=False)
    object_key: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    original_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(32), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    def __repr__(self) -> str:
        return f"<Image {self.id} {self.object_key!r} {self.status}>"

    def to_json(self) -> dict:
        created = self.created_at.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        return {
            "filename": self.filename,
            "original_filename": self.original_filename,
            "content_type": self.content_type,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "sha256": self.sha256,
            "created_at": created.replace("+00:00", "Z"),
        }
