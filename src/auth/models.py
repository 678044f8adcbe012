"""The auth service's extensions and its tables."""

from __future__ import annotations

import datetime
from typing import NamedTuple

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (Index("users_username_lower_key", func.lower("username"), unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(60), nullable=False)
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    def __repr__(self) -> str:  # never the hash
        return f"<User {self.id} {self.username!r}>"


class TokenUser(NamedTuple):
    """The user a valid token names, as a token check needs it (servicekit.tokens.current_user)."""

    id: int
    username: str


class LoginThrottle(db.Model):
    """Failed logins for one username; written only by auth.throttle's atomic statements."""

    __tablename__ = "login_throttles"
    __table_args__ = (Index("login_throttles_last_attempt_at_idx", "last_attempt_at"),)

    username_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_attempt_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
