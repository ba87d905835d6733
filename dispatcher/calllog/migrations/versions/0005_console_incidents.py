"""The console's case work: incidents opened from a call (its linkedid, category, address,
outcome), operators' append-only notes on a call, and the call's disposition.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("linkedid", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("category", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("address", sa.Text(), nullable=True))
        batch.add_column(sa.Column("outcome", sa.Text(), nullable=True))
    op.create_index("ix_incidents_linkedid", "incidents", ["linkedid"])
    op.create_table(
        "call_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_call_notes_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_notes")),
    )
    op.create_index("ix_call_notes_linkedid", "call_notes", ["linkedid"])
    op.create_index("ix_call_notes_incident", "call_notes", ["incident_id"])
    op.create_table(
        "call_dispositions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=64), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_dispositions")),
    )
    op.create_index("ix_call_dispositions_linkedid", "call_dispositions", ["linkedid"])
    op.create_index("ix_call_dispositions_number", "call_dispositions",
                    ["caller_number", "disposition"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_call_dispositions_number", table_name="call_dispositions")
    op.drop_index("ix_call_dispositions_linkedid", table_name="call_dispositions")
    op.drop_table("call_dispositions")
    op.drop_index("ix_call_notes_incident", table_name="call_notes")
    op.drop_index("ix_call_notes_linkedid", table_name="call_notes")
    op.drop_table("call_notes")
    op.drop_index("ix_incidents_linkedid", table_name="incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("outcome")
        batch.drop_column("address")
        batch.drop_column("category")
        batch.drop_column("linkedid")
