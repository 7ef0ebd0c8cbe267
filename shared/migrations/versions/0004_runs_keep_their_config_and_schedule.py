"""the ledger tells the truth: a run keeps the config and name of its schedule, deletes leave history alone

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:05:00.000000

Runs copy their schedule's config (and name) when they are queued, so an edit takes effect from the next slot
only. History no longer references the schedule table: deleting a schedule touched every run of it (ON DELETE
SET NULL), holding locks in the reverse order of the claims'; runs now keep the id and name of their schedule.
On SQLite the schedule ids are made AUTOINCREMENT, so a deleted schedule's id is never given to a new one.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Names for SQLite's unnamed constraints, so that a batch operation can find the foreign key it drops.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    bind = op.get_bind()
    for foreign_key in sa.inspect(bind).get_foreign_keys("task_run_history"):
        # Unnamed on SQLite (0001 gave it no name): the naming convention names it for the batch copy.
        name = foreign_key["name"] or NAMING["fk"] % {
            "table_name": "task_run_history",
            "column_0_name": "schedule_id",
            "referred_table_name": "task_schedules",
        }
        with op.batch_alter_table("task_run_history", naming_convention=NAMING) as table:
            table.drop_constraint(name, type_="foreignkey")
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table(
            "task_schedules", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    with op.batch_alter_table("task_run_history") as table:
        table.add_column(sa.Column("config", JSON, nullable=True))
        table.add_column(sa.Column("schedule_name", sa.String(length=100), nullable=True))
    # Runs of schedules that exist take their name now; their config stays null, read from the schedule when
    # they start, as before this revision.
    op.execute(
        "UPDATE task_run_history SET schedule_name = "
        "(SELECT name FROM task_schedules WHERE task_schedules.id = task_run_history.schedule_id) "
        "WHERE schedule_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("task_run_history") as table:
        table.drop_column("schedule_name")
        table.drop_column("config")
    op.execute(
        "UPDATE task_run_history SET schedule_id = NULL WHERE schedule_id NOT IN (SELECT id FROM task_schedules)"
    )
    with op.batch_alter_table("task_run_history") as table:
        table.create_foreign_key(
            "task_run_history_schedule_id_fkey",
            "task_schedules",
            ["schedule_id"],
            ["id"],
            ondelete="SET NULL",
        )
