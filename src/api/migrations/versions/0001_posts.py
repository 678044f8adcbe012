"""posts: what users write; the author's id and name come from their verified token.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("char_length(content) BETWEEN 1 AND 10000", name="posts_content_length"),
    )
    op.create_index("posts_created_at_id_idx", "posts", ["created_at", "id"])
    op.create_index("posts_user_id_created_at_id_idx", "posts", ["user_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("posts")
