"""policies and ledger: misfire, overlap, jitter and DST choices per schedule; ledger entries covering a range of slots

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UNFINISHED = "status IN ('queued', 'running')"


def upgrade() -> None:
    with op.batch_alter_table("task_schedules") as table:
        table.add_column(
            sa.Column("misfire_policy", sa.String(20), nullable=False, server_default="coalesce")
        )
        table.add_column(sa.Column("catch_up_max", sa.Integer(), nullable=True))
        table.add_column(sa.Column("catch_up_window_s", sa.Integer(), nullable=True))
        table.add_column(sa.Column("overlap_policy", sa.String(20), nullable=False, server_default="allow"))
        table.add_column(sa.Column("jitter_s", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("dst_policy", sa.String(20), nullable=False, server_default="once"))
        table.add_column(sa.Column("paused_slot", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("broken_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("task_run_history") as table:
        table.add_column(sa.Column("last_slot", sa.DateTime(timezone=True), nullable=True))
    # The overlap policy's question at a claim: does this schedule have a run still queued or running?
    op.create_index(
        "ix_task_run_history_schedule_unfinished",
        "task_run_history",
        ["schedule_id"],
        postgresql_where=sa.text(UNFINISHED),
        sqlite_where=sa.text(UNFINISHED),
    )


def downgrade() -> None:
    op.drop_index("ix_task_run_history_schedule_unfinished", table_name="task_run_history")
    # Entries that are no attempt (missed, skipped at a claim, a disable or a delete) mean nothing to 0005.
    op.execute("DELETE FROM task_run_history WHERE attempt = 0")
    with op.batch_alter_table("task_run_history") as table:
        table.drop_column("last_slot")
    with op.batch_alter_table("task_schedules") as table:
        for column in (
            "broken_reason",
            "paused_slot",
            "dst_policy",
            "jitter_s",
            "overlap_policy",
            "catch_up_window_s",
            "catch_up_max",
            "misfire_policy",
        ):
            table.drop_column(column)
