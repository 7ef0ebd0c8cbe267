"""The audit trail: who changed what, and when.

Every change to a schedule or a token writes one ``AuditEvent`` in the change's own transaction, so that an
entry exists exactly when the change does. An update records each field it changed, before and after; a secret
field of a config is recorded as changed, never by its value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from shared.db import utcnow
from shared.models import AuditAction, AuditEvent, TaskSchedule
from shared.timing import instant_text

SECRET_VALUE = "(secret)"  # what the trail shows of a secret config field's value


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a person (their e-mail), an API token (``token:<id>``, with its id) or a process
    (``cronwork apply``); with the API request's id when a request made it."""

    name: str
    token_id: int | None = None
    request_id: str | None = None


# Changes made by cronwork itself, or by code that names no one (the tests, a Python shell).
PROCESS = Actor("cronwork")


def record(
    session: Session,
    actor: Actor,
    action: AuditAction,
    schedule: TaskSchedule | None = None,
    changes: dict[str, dict[str, Any]] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add the event of ``action`` by ``actor`` to ``session``'s transaction."""
    session.add(
        AuditEvent(
            at=utcnow(),
            actor=actor.name,
            action=action,
            schedule_id=schedule.id if schedule else None,
            schedule_name=schedule.name if schedule else None,
            token_id=actor.token_id,
            changes=changes,
            detail=detail,
            request_id=actor.request_id,
        )
    )


def jsonable(value: Any) -> Any:
    """``value`` as the API writes it: instants in UTC with a ``Z``."""
    return instant_text(value) if isinstance(value, datetime) else value


def field_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], secret_keys: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """Each field whose value differs between ``before`` and ``after`` (keyed by attribute), as
    ``{"before": ..., "after": ...}``; a config by each of its keys (``config.<key>``), a secret key's value
    shown as ``SECRET_VALUE``."""
    changes: dict[str, dict[str, Any]] = {}
    for field, old in before.items():
        new = after.get(field)
        if field == "config":
            old_config, new_config = old or {}, new or {}
            for key in sorted(old_config.keys() | new_config.keys()):
                if old_config.get(key) != new_config.get(key):
                    shown = [
                        SECRET_VALUE if key in secret_keys and value is not None else value
                        for value in (old_config.get(key), new_config.get(key))
                    ]
                    changes[f"config.{key}"] = {"before": shown[0], "after": shown[1]}
        elif old != new:
            changes[field] = {"before": jsonable(old), "after": jsonable(new)}
    return changes


def audit_query(
    schedule_id: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    from_: datetime | None = None,
    to: datetime | None = None,
) -> Select[Any]:
    """Audit events newest first, filtered by each argument given (``from_``/``to``: when, inclusive)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    if schedule_id is not None:
        query = query.where(AuditEvent.schedule_id == schedule_id)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(AuditEvent.action == action)
    if from_ is not None:
        query = query.where(AuditEvent.at >= from_)
    if to is not None:
        query = query.where(AuditEvent.at <= to)
    return query
