"""last run read from the history: drop task_schedules.last_run_at

A column written on every run start made each fire update its schedule's row twice, and the start waited for
(and held up) the claims that lock that row. The API reads the latest start from the history instead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 04:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_schedules") as table:
        table.drop_column("last_run_at")


def downgrade() -> None:
    with op.batch_alter_table("task_schedules") as table:
        table.add_column(sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE task_schedules SET last_run_at = (SELECT max(started_at) FROM task_run_history"
        " WHERE task_run_history.schedule_id = task_schedules.id)"
    )
