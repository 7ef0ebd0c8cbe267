"""vacuum the churning tables sooner: runs, schedules and the tick ledger are rewritten at every fire

Every fire inserts a run and updates it twice (running, then its outcome), updates its schedule's row (the next
slot and key) and adds and removes a tick-ledger row; retention deletes runs in bulk. PostgreSQL's default
autovacuum waits for a fifth of a table to be dead: on a runs table of ten million rows, two million dead rows
whose space is not reused, and statistics as stale. These tables are vacuumed and analyzed once 2 % of them is
dead (or, for the runs' inserts, new), as queue tables usually are.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:30:00.000000
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHURNING_TABLES = ("task_run_history", "task_schedules", "ticks_in_flight")
STORAGE_PARAMETERS = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_scale_factor",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":  # SQLite has no autovacuum to tune
        return
    settings = ", ".join(f"{parameter} = 0.02" for parameter in STORAGE_PARAMETERS)
    for table in CHURNING_TABLES:
        op.execute(f"ALTER TABLE {table} SET ({settings})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in CHURNING_TABLES:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(STORAGE_PARAMETERS)})")
