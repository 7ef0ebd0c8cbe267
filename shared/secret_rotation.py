"""``cronwork rotate-secrets``: every stored secret config field re-encrypted under the first of ``SECRET_KEYS``.

Rotation (see ``shared.secrets``): put a new key first in ``SECRET_KEYS``, keeping the old ones after it, roll
the pods, rotate, then drop the old keys. A value already under the first key is left as it is, so a second
rotation changes nothing. Rotating is not an edit: a schedule's version, its ``updatedAt`` and its tick stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from shared.models import TaskSchedule
from shared.runtime import Runtime
from shared.secrets import SecretError, rotate_secrets
from shared.task_types import TaskType, installed_task_types

BATCH_SIZE = 500  # schedules locked and rewritten per transaction


@dataclass
class Rotation:
    """What a rotation did: values re-encrypted (in how many schedules), values already under the first key, and
    what it could not rotate, one line each (a schedule, and why)."""

    rotated_values: int = 0
    rotated_schedules: int = 0
    current_values: int = 0
    problems: list[str] = field(default_factory=list)


def rotate_stored_secrets(runtime: Runtime) -> Rotation:
    """Re-encrypt, under the first of ``SECRET_KEYS``, every encrypted secret of every schedule that is not
    under it yet, a batch of rows at a time, each row locked while it is rewritten. ``SecretError`` when
    ``SECRET_KEYS`` is empty or holds a key that is not a Fernet key."""
    first_key = _first_key(runtime.settings.secret_keys)
    task_types = installed_task_types()  # every installed type, offered or not: their secrets are stored too
    rotation = Rotation()
    after_id = 0
    while True:
        with runtime.sessions.begin() as session:
            batch = list(
                session.scalars(
                    select(TaskSchedule)
                    .where(TaskSchedule.id > after_id)
                    .order_by(TaskSchedule.id)
                    .limit(BATCH_SIZE)
                    .with_for_update(key_share=True)
                )
            )
            for schedule in batch:
                _rotate_schedule(runtime, schedule, task_types.get(schedule.task_type), first_key, rotation)
        if len(batch) < BATCH_SIZE:
            return rotation
        after_id = batch[-1].id


def _first_key(secret_keys: str) -> Fernet:
    keys = [key.strip() for key in secret_keys.split(",") if key.strip()]
    if not keys:
        raise SecretError("SECRET_KEYS is empty: set the keys, the new one first, to rotate to it")
    try:
        return Fernet(keys[0])
    except ValueError:
        raise SecretError("SECRET_KEYS holds a key that is not a Fernet key") from None


def _rotate_schedule(
    runtime: Runtime,
    schedule: TaskSchedule,
    task_type: TaskType | None,
    first_key: Fernet,
    rotation: Rotation,
) -> None:
    encrypted = {
        key: value["encrypted"]
        for key, value in schedule.config.items()
        if isinstance(value, dict) and set(value) == {"encrypted"}
    }
    if not encrypted:
        return
    if task_type is None:
        rotation.problems.append(
            f"schedule {schedule.id} ({schedule.name}): its task type {schedule.task_type!r} is not installed, "
            "so its secrets were not rotated"
        )
        return
    stale = [
        key for key in sorted(task_type.secret_keys & set(encrypted)) if not _opens(first_key, encrypted[key])
    ]
    rotation.current_values += len(task_type.secret_keys & set(encrypted)) - len(stale)
    if not stale:
        return
    config = dict(schedule.config)
    for key in stale:
        try:
            config.update(rotate_secrets(runtime.settings, {key: config[key]}, task_type))
        except InvalidToken:
            rotation.problems.append(
                f"schedule {schedule.id} ({schedule.name}): none of SECRET_KEYS decrypts config.{key} "
                "(was a key dropped?)"
            )
            continue
        rotation.rotated_values += 1
    if config != schedule.config:
        schedule.config = config
        rotation.rotated_schedules += 1


def _opens(key: Fernet, token: str) -> bool:
    try:
        key.decrypt(token.encode())
    except InvalidToken:
        return False
    return True
