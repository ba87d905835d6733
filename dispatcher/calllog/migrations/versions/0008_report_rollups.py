"""Per-hour roll-ups for the supervisors' report (call_rollups, agency_rollups), filled from
the calls and legs already logged.

The backfill reads every call and agency leg once and writes their sums (see
``dispatcher.calllog.rollups``): about a minute per million calls. From then on the call log's
writer keeps the roll-ups in the transaction that saves each journey;
``rollups.differences`` compares them with a recomputation at any time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _count(name: str, big: bool = False) -> sa.Column:
    kind = sa.BigInteger() if big else sa.Integer()
    return sa.Column(name, kind, nullable=False, server_default="0")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "call_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("short_second", sa.Integer(), nullable=False),
        _count("calls"),
        _count("answer_us", big=True),
        _count("talk_us", big=True),
        sa.Column("answer_max", sa.Float(), nullable=True),
        _count("requeued"),
        _count("within_15"),
        _count("within_20"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_rollups")),
        sa.UniqueConstraint(
            "hour", "kind", "direction", "category", "operator_id", "outcome", "short_second",
            name="uq_call_rollups_key",
        ),
    )
    op.create_table(
        "agency_rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        _count("legs"),
        _count("transfers"),
        _count("answered"),
        _count("no_answer"),
        _count("busy"),
        _count("failed"),
        _count("cancelled"),
        _count("fallbacks"),
        _count("ring_n"),
        _count("ring_us", big=True),
        sa.Column("ring_max", sa.Float(), nullable=True),
        _count("talk_us", big=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_rollups")),
        sa.UniqueConstraint("hour", "agency_id", name="uq_agency_rollups_key"),
    )
    # The backfill uses the application's code so the first roll-ups are the ones the writer
    # would have kept: one definition of what a call adds.
    from dispatcher.calllog import rollups

    rollups.rebuild(op.get_bind())


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("agency_rollups")
    op.drop_table("call_rollups")
