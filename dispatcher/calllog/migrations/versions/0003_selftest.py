"""Self-test: calls are marked as tests (kept out of the reports) and each self-test call's
result is kept.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REPORT_COLUMNS = ["started_at", "direction", "outcome", "duration_seconds", "answer_seconds",
                   "talk_seconds", "queue_passes", "category", "answered_by_id",
                   "caller_number"]


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("test", sa.Boolean(), nullable=False, server_default="0"))
    # The reports filter on the mark: it joins their covering index.
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_report")
        batch.create_index("ix_calls_report", [*_REPORT_COLUMNS, "test"], unique=False)
    op.create_table(
        "selftest_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_selftest_runs")),
    )
    with op.batch_alter_table("selftest_runs") as batch:
        batch.create_index("ix_selftest_runs_started", ["started_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("selftest_runs") as batch:
        batch.drop_index("ix_selftest_runs_started")
    op.drop_table("selftest_runs")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_report")
        batch.create_index("ix_calls_report", _REPORT_COLUMNS, unique=False)
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("test")
