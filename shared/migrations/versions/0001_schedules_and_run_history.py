"""schedules and run history

Revision ID: 0001
Revises:
Create Date: 2026-11-27 11:19:53.010554
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "task_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("task_type", sa.String(length=50), nullable=False),
        sa.Column("schedule_type", sa.String(length=20), nullable=False),
        sa.Column("cron_expression", sa.String(length=100), nullable=True),
        sa.Column("interval_ms", sa.BigInteger(), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dedupe_key", sa.String(length=32), nullable=True),
        sa.Column("tick_published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_task_schedules_armed",
        "task_schedules",
        ["next_run_at"],
        unique=False,
        postgresql_where=sa.text("enabled"),
        sqlite_where=sa.text("enabled"),
    )
    op.create_index("ix_task_schedules_task_type", "task_schedules", ["task_type"], unique=False)
    op.create_table(
        "task_run_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("task_type", sa.String(length=50), nullable=False),
        sa.Column("system_task", sa.String(length=50), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("triggered_by", sa.String(length=20), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("missed_slots", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["task_schedules.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_run_history_queued_at", "task_run_history", ["queued_at"], unique=False)
    op.create_index(
        "ix_task_run_history_schedule_newest", "task_run_history", ["schedule_id", "id"], unique=False
    )
    op.create_index(
        "ix_task_run_history_system_newest", "task_run_history", ["system_task", "id"], unique=False
    )
    op.create_index(
        "ix_task_run_history_unfinished",
        "task_run_history",
        ["status", "due_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        "uq_task_run_history_schedule_slot",
        "task_run_history",
        ["schedule_id", "scheduled_for", "attempt"],
        unique=True,
        postgresql_where=sa.text("triggered_by = 'schedule'"),
        sqlite_where=sa.text("triggered_by = 'schedule'"),
    )
    op.create_index(
        "uq_task_run_history_system_slot",
        "task_run_history",
        ["system_task", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("triggered_by = 'system'"),
        sqlite_where=sa.text("triggered_by = 'system'"),
    )


def downgrade() -> None:

    op.drop_index(
        "uq_task_run_history_system_slot",
        table_name="task_run_history",
        postgresql_where=sa.text("triggered_by = 'system'"),
        sqlite_where=sa.text("triggered_by = 'system'"),
    )
    op.drop_index(
        "uq_task_run_history_schedule_slot",
        table_name="task_run_history",
        postgresql_where=sa.text("triggered_by = 'schedule'"),
        sqlite_where=sa.text("triggered_by = 'schedule'"),
    )
    op.drop_index(
        "ix_task_run_history_unfinished",
        table_name="task_run_history",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_task_run_history_system_newest", table_name="task_run_history")
    op.drop_index("ix_task_run_history_schedule_newest", table_name="task_run_history")
    op.drop_index("ix_task_run_history_queued_at", table_name="task_run_history")
    op.drop_table("task_run_history")
    op.drop_index("ix_task_schedules_task_type", table_name="task_schedules")
    op.drop_index(
        "ix_task_schedules_armed",
        table_name="task_schedules",
        postgresql_where=sa.text("enabled"),
        sqlite_where=sa.text("enabled"),
    )
    op.drop_table("task_schedules")
