"""Callbacks count the citizen's unanswered attempts (kept across server restarts).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("citizen_no_answers", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_column("citizen_no_answers")
