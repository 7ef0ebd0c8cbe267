"""bounds and backfill: a schedule's start and end, and backfilled runs under the one-run-per-slot index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:15:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEDULED = "triggered_by = 'schedule'"
SCHEDULED_OR_BACKFILLED = "triggered_by IN ('schedule', 'backfill')"


def _slot_index(predicate: str) -> None:
    op.create_index(
        "uq_task_run_history_schedule_slot",
        "task_run_history",
        ["schedule_id", "scheduled_for", "attempt"],
        unique=True,
        postgresql_where=sa.text(predicate),
        sqlite_where=sa.text(predicate),
    )


def upgrade() -> None:
    with op.batch_alter_table("task_schedules") as table:
        table.add_column(sa.Column("start_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("end_at", sa.DateTime(timezone=True), nullable=True))
    # A slot has one run, whether its tick or a backfill made it.
    op.drop_index("uq_task_run_history_schedule_slot", table_name="task_run_history")
    _slot_index(SCHEDULED_OR_BACKFILLED)


def downgrade() -> None:
    op.execute("DELETE FROM task_run_history WHERE triggered_by = 'backfill'")
    op.drop_index("uq_task_run_history_schedule_slot", table_name="task_run_history")
    _slot_index(SCHEDULED)
    with op.batch_alter_table("task_schedules") as table:
        table.drop_column("end_at")
        table.drop_column("start_at")
