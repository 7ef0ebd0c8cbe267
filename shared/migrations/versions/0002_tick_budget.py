"""tick budget: the ledger of ticks in flight, and the index of slots waiting for their tick

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 20:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNPUBLISHED = "enabled AND tick_published_at IS NULL AND next_run_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "ticks_in_flight",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_task_schedules_unpublished",
        "task_schedules",
        ["next_run_at"],
        unique=False,
        postgresql_where=sa.text(UNPUBLISHED),
        sqlite_where=sa.text(UNPUBLISHED),
    )
    # Ticks published before this revision have no ledger row; mark their slots unpublished so the pump
    # publishes them again under the budget (a duplicate of a live tick is dropped by the slot check).
    op.execute("UPDATE task_schedules SET tick_published_at = NULL")


def downgrade() -> None:
    op.drop_index("ix_task_schedules_unpublished", table_name="task_schedules")
    op.drop_table("ticks_in_flight")
