"""real work: per-schedule run settings, labels and owner, schedules from code, run outputs and overrides

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 07:30:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("task_schedules") as table:
        table.add_column(sa.Column("max_attempts", sa.Integer(), nullable=True))
        table.add_column(sa.Column("retry_base_delay_ms", sa.Integer(), nullable=True))
        table.add_column(sa.Column("time_limit_s", sa.Integer(), nullable=True))
        table.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        table.add_column(sa.Column("labels", JSON, nullable=False, server_default=sa.text("'{}'")))
        table.add_column(sa.Column("source", sa.String(length=100), nullable=True))
        table.add_column(sa.Column("source_key", sa.String(length=200), nullable=True))
    op.create_index(
        "uq_task_schedules_source_key",
        "task_schedules",
        ["source", "source_key"],
        unique=True,
        postgresql_where=sa.text("source IS NOT NULL"),
        sqlite_where=sa.text("source IS NOT NULL"),
    )
    with op.batch_alter_table("task_run_history") as table:
        table.add_column(sa.Column("output", sa.Text(), nullable=True))
        table.add_column(sa.Column("config_override", JSON, nullable=True))
        table.add_column(sa.Column("time_limit_s", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_run_history") as table:
        table.drop_column("time_limit_s")
        table.drop_column("config_override")
        table.drop_column("output")
    op.drop_index("uq_task_schedules_source_key", table_name="task_schedules")
    with op.batch_alter_table("task_schedules") as table:
        for column in (
            "source_key",
            "source",
            "labels",
            "owner",
            "time_limit_s",
            "retry_base_delay_ms",
            "max_attempts",
        ):
            table.drop_column(column)
