"""images: one row per stored image, 'pending' while its object is being written.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(64), nullable=False),
        sa.Column("object_key", sa.String(128), nullable=False),
        sa.Column("original_filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('pending', 'committed')", name="images_status_check"),
        sa.UniqueConstraint("object_key", name="images_object_key_key"),
    )
    op.create_index("images_user_filename_key", "images", ["user_id", "filename"], unique=True)
    op.create_index("images_user_created_idx", "images", ["user_id", "created_at", "id"])
    op.create_index("images_status_created_idx", "images", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("images")
