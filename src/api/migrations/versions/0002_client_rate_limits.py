"""client_rate_limits: requests per client address and fixed window, shared by every api replica.

Revision ID: 0002_client_rate_limits
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_client_rate_limits"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "client_rate_limits",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("scope", "client", "window_start", name="client_rate_limits_pkey"),
    )
    # For forgetting past windows without a scan of the whole table.
    op.create_index("client_rate_limits_window_start_idx", "client_rate_limits", ["window_start"])


def downgrade() -> None:
    op.drop_table("client_rate_limits")
