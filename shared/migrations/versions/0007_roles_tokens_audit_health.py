"""roles, tokens, audit, health: API tokens, the audit trail, each schedule's failure streak, who asked for a run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonDocument = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_prefix", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(255), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("schedule_name", sa.String(100), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("changes", JsonDocument, nullable=True),
        sa.Column("detail", JsonDocument, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_audit_events_schedule_newest", "audit_events", ["schedule_id", "id"])
    op.create_index("ix_audit_events_actor_newest", "audit_events", ["actor", "id"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_table(
        "schedule_health",
        sa.Column("schedule_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("failure_streak", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("task_run_history") as table:
        table.add_column(sa.Column("requested_by", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_run_history") as table:
        table.drop_column("requested_by")
    op.drop_table("schedule_health")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_index("ix_audit_events_actor_newest", table_name="audit_events")
    op.drop_index("ix_audit_events_schedule_newest", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_tokens")
