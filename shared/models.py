"""The tables: schedules (the source of truth for when things run), run history (what ran), each schedule's
health (its failure streak), API tokens and the audit trail (who changed what)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, query_expression

from shared.db import Base, UTCDateTime, utcnow

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class ScheduleType(StrEnum):
    """How a schedule is timed: a cron expression, a fixed interval, or only by hand."""

    CRON = "cron"
    INTERVAL = "interval"
    MANUAL = "manual"


class RunStatus(StrEnum):
    """Where a run is: queued, running, or one of its outcomes."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its worker vanished (lease ran out) or was stopped before recording an outcome
    SKIPPED = (
        "skipped"  # never started: its schedule was disabled first, or the overlap policy (errorMessage says)
    )
    MISSED = "missed"  # a range of slots nothing ran, by the misfire policy (errorMessage says why)


FINISHED_STATUSES = (
    RunStatus.SUCCESS,
    RunStatus.FAILED,
    RunStatus.ABANDONED,
    RunStatus.SKIPPED,
    RunStatus.MISSED,
)
# A ledger entry that is no attempt (a missed range, a slot skipped before it was queued) has attempt 0: it holds
# no place in the one-run-per-slot index that a run of the slot (a backfill's, say) would need.
NOT_AN_ATTEMPT = 0


class MisfirePolicy(StrEnum):
    """What a claim does with slots that passed while nothing ran them (workers down, the schedule disabled)."""

    COALESCE = "coalesce"  # run the latest of them now; the others are missed
    SKIP = (
        "skip"  # run none of them, unless the latest is within the misfire grace; continue at the next slot
    )
    CATCH_UP = "catchUp"  # run those within the window, oldest first, at most the cap; the others are missed


class OverlapPolicy(StrEnum):
    """Whether a slot runs while the schedule's previous scheduled run is still queued or running."""

    ALLOW = "allow"
    SKIP = "skip"


class DstPolicy(StrEnum):
    """How a fixed-hour cron slot runs in the hour a fall-back night repeats."""

    ONCE = "once"  # at its first occurrence (Vixie cron)
    BOTH = "both"  # at each occurrence


class TriggeredBy(StrEnum):
    """What made a run: its schedule, an operator (Run Now), a backfill of past slots, or the system crons."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    BACKFILL = "backfill"
    SYSTEM = "system"


# The runs that belong to a slot of their schedule, of which a slot has one per attempt (the unique index below;
# statements that insert such runs name it by this predicate).
SLOT_RUNS = "triggered_by IN ('schedule', 'backfill')"


class TaskSchedule(Base):
    """A user schedule. ``next_run_at`` is the armed slot; ``dedupe_key`` names the one tick allowed to claim it.

    ``tick_published_at`` is the outbox flag: null while the tick for the current (slot, key) has not been
    handed to the broker. ``version`` counts edits, for clients that want optimistic concurrency.
    """

    __tablename__ = "task_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    task_type: Mapped[str] = mapped_column(String(50))
    schedule_type: Mapped[str] = mapped_column(String(20))
    cron_expression: Mapped[str | None] = mapped_column(String(100))
    interval_ms: Mapped[int | None] = mapped_column(BigInteger)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument, default=dict)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When a run of the schedule last started (scheduled, manual or retry), read from its history when asked
    # (``schedules.with_last_run``): a column written on every start would be a hot row that claims wait for.
    # The table's own ``last_run_at`` column (migration 0001) is no longer read or written; it stays until a
    # later release drops it, so that pods of the previous release keep working through a rolling upgrade.
    last_run_at: Mapped[datetime | None] = query_expression()
    last_run_status: Mapped[str | None] = query_expression()  # the newest run's, read with ``last_run_at``
    # Its health, from its ``schedule_health`` row (``schedules.with_health``): 0 and None when it has none.
    failure_streak: Mapped[int | None] = query_expression()
    last_error: Mapped[str | None] = query_expression()
    last_error_at: Mapped[datetime | None] = query_expression()
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dedupe_key: Mapped[str | None] = mapped_column(String(32))
    tick_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # How its runs run, where the task type's defaults are not wanted (None: the task type's, within the
    # deployment's limits).
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    retry_base_delay_ms: Mapped[int | None] = mapped_column(Integer)
    time_limit_s: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(255))
    # No slot before ``start_at`` nor after ``end_at`` (either may be None: unbounded).
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument, default=dict, server_default=text("'{}'"))
    # The policies (``MisfirePolicy``, ``OverlapPolicy``, ``DstPolicy``); a catch-up's cap and window; jitter: a
    # run starts up to this many seconds after its slot, by an offset fixed per (schedule, slot).
    misfire_policy: Mapped[str] = mapped_column(String(20), default="coalesce", server_default="coalesce")
    catch_up_max: Mapped[int | None] = mapped_column(Integer)
    catch_up_window_s: Mapped[int | None] = mapped_column(Integer)
    overlap_policy: Mapped[str] = mapped_column(String(20), default="allow", server_default="allow")
    jitter_s: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dst_policy: Mapped[str] = mapped_column(String(20), default="once", server_default="once")
    # A disabled schedule's first slot not run: enabling it again goes on from there, so the slots its pause
    # passed are settled by its misfire policy (None: it goes on from the moment it is enabled).
    paused_slot: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why its stored timing no longer gives slots (a library upgrade refusing it): its chain stopped there.
    broken_reason: Mapped[str | None] = mapped_column(Text)
    # Schedules kept as code (``cronwork apply``): the file's source name and the entry's stable key.
    source: Mapped[str | None] = mapped_column(String(100))
    source_key: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        Index(
            "uq_task_schedules_source_key",
            "source",
            "source_key",
            unique=True,
            postgresql_where=text("source IS NOT NULL"),
            sqlite_where=text("source IS NOT NULL"),
        ),
        # The pump's scan for lost ticks: armed schedules by slot.
        Index(
            "ix_task_schedules_armed",
            "next_run_at",
            postgresql_where=text("enabled"),
            sqlite_where=text("enabled"),
        ),
        # Slots waiting for their tick, earliest first: what every publisher takes from, in slot order.
        Index(
            "ix_task_schedules_unpublished",
            "next_run_at",
            postgresql_where=text("enabled AND tick_published_at IS NULL AND next_run_at IS NOT NULL"),
            sqlite_where=text("enabled AND tick_published_at IS NULL AND next_run_at IS NOT NULL"),
        ),
        Index("ix_task_schedules_task_type", "task_type"),
        # SQLite would give a deleted schedule's id to the next one, and its runs (which keep the id) with it.
        {"sqlite_autoincrement": True},
    )


class TickInFlight(Base):
    """A tick message the broker holds: the ledger of the tick budget.

    A row is inserted in the transaction that flags the tick's slots, just before the tick is sent (and deleted
    again if the broker refuses it), and deleted by the claim that consumes it, whether its slots were still
    current or stale, so ticks made stale by an edit still count until they arrive. A row whose tick is overdue past the grace period was lost (or is stuck behind a backlog), and the
    pump forgets it.
    """

    __tablename__ = "ticks_in_flight"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    slot_count: Mapped[int] = mapped_column(Integer)


class TaskRunHistory(Base):
    """One attempt of one run: the ledger. It keeps the id and name of its schedule, and the config it runs with
    (copied when it was queued), whatever happens to the schedule after; no foreign key ties it to the schedule
    row, so deleting a schedule touches no history."""

    __tablename__ = "task_run_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    schedule_id: Mapped[int | None] = mapped_column(Integer)  # None for a system task's run
    schedule_name: Mapped[str | None] = mapped_column(String(100))
    task_type: Mapped[str] = mapped_column(String(50))
    system_task: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    triggered_by: Mapped[str] = mapped_column(String(20))
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When this attempt may start: its slot, now for Run Now, or the end of a retry's backoff.
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the run message's outbox flag
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    missed_slots: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # a missed entry's count
    # The last slot a ledger entry covers, when it covers a range (a missed entry): ``scheduled_for`` is its first.
    last_slot: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)  # the handler's result line (an HTTP status and excerpt)
    # The schedule's config when the run was queued (None: queued before revision 0004, read at start).
    config: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    config_override: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)  # Run Now's one-off config
    time_limit_s: Mapped[int | None] = mapped_column(Integer)  # this run's, when not the worker-wide limit
    # Who pressed Run Now or asked for a backfill (an e-mail, ``token:<id>``); None for a slot's own run.
    requested_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        # The last line of defence of "no slot runs twice": one row per (schedule, slot, attempt).
        Index(
            "uq_task_run_history_schedule_slot",
            "schedule_id",
            "scheduled_for",
            "attempt",
            unique=True,
            postgresql_where=text(SLOT_RUNS),
            sqlite_where=text(SLOT_RUNS),
        ),
        Index(
            "uq_task_run_history_system_slot",
            "system_task",
            "scheduled_for",
            unique=True,
            postgresql_where=text("triggered_by = 'system'"),
            sqlite_where=text("triggered_by = 'system'"),
        ),
        # History newest-first per schedule, and per system task, stays an index range scan at any size.
        Index("ix_task_run_history_schedule_newest", "schedule_id", "id"),
        Index("ix_task_run_history_system_newest", "system_task", "id"),
        # The pump's scans: runs still waiting, runs whose lease may have run out.
        Index(
            "ix_task_run_history_unfinished",
            "status",
            "due_at",
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_task_run_history_queued_at", "queued_at"),
        # The overlap policy's question at a claim: has this schedule a run still queued or running?
        Index(
            "ix_task_run_history_schedule_unfinished",
            "schedule_id",
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
    )


class ScheduleHealth(Base):
    """A schedule's run outcomes in short: how many of its latest finished runs failed in a row, and the last
    error. A row of its own, upserted with each outcome, so that recording one never waits for the schedule's
    row, which claims lock."""

    __tablename__ = "schedule_health"

    schedule_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    failure_streak: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token for an internal tool: its role, and its secret only as a SHA-256 hash (the secret is
    256 random bits, so a fast hash is as safe as a slow one). ``secret_prefix`` lets people tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = ({"sqlite_autoincrement": True},)


class AuditAction(StrEnum):
    """What an audit event records."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ENABLE = "enable"
    DISABLE = "disable"
    RUN_NOW = "runNow"
    BACKFILL = "backfill"
    TOKEN_CREATE = "tokenCreate"
    TOKEN_REVOKE = "tokenRevoke"


class AuditEvent(Base):
    """Who did what, when: one row per change, written in the change's own transaction. ``changes`` maps each
    changed field (by its API name) to its value before and after; ``detail`` holds what else the action names
    (a Run Now's run id, a backfill's window, a token's name and role)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(30))
    schedule_id: Mapped[int | None] = mapped_column(Integer)
    schedule_name: Mapped[str | None] = mapped_column(String(100))
    token_id: Mapped[int | None] = mapped_column(Integer)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    request_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_audit_events_schedule_newest", "schedule_id", "id"),
        Index("ix_audit_events_actor_newest", "actor", "id"),
        Index("ix_audit_events_at", "at"),
    )
