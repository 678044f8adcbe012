"""login_throttles: consecutive failed logins per username, shared by every auth replica.

Keyed by a digest of the lower-cased username, whether or not an account has it: people type
passwords into the username field, and those must not be stored readable.

Revision ID: 0002_login_throttles
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_login_throttles"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("username_digest", sa.LargeBinary(32), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("failures >= 0", name="login_throttles_failures_not_negative"),
    )
    # For forgetting old entries without a scan of the whole table.
    op.create_index("login_throttles_last_attempt_at_idx", "login_throttles", ["last_attempt_at"])


def downgrade() -> None:
    op.drop_table("login_throttles")
