"""Secret config fields: write-only, stored encrypted or as a reference, revealed only to the handler.

A field a task type marks ``secret`` is stored in the schedule's config as one of:

- ``{"encrypted": "<Fernet token>"}``: the value sent, encrypted with the first of ``SECRET_KEYS``;
- ``{"env": "NAME"}``: read from the worker's environment variable ``NAME`` when the run starts;
- ``{"file": "/path"}``: read from a file (a mounted Kubernetes Secret) when the run starts.

The API never answers with the value: it shows ``{"set": true}`` for an encrypted one (references, which hold
no secret, are shown as stored), and sending ``{"set": true}`` back keeps what is stored, so a client can
send back what it read. Rotation: put a new key first in ``SECRET_KEYS`` (every key listed still decrypts),
run ``cronwork rotate-secrets`` (re-encrypts every stored value with the first key), then drop the old key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.settings import Settings
from shared.task_types import FieldType, TaskFailed, TaskType

SHOWN_WHEN_SET = {"set": True}
REFERENCE_KINDS = ("env", "file")
MASK = "••••••"
SHORTEST_MASKED = 4  # shorter values would mask ordinary words of a message
SUMMARY_MAX_CHARS = 200  # a list's one-line summary of a config (``config_summary``)


class SecretError(ValueError):
    """A secret value cannot be stored as sent; the message says why (and never holds the value)."""


def _keys(settings: Settings) -> MultiFernet:
    keys = [key.strip() for key in settings.secret_keys.split(",") if key.strip()]
    if not keys:
        raise SecretError(
            'cannot be stored: set SECRET_KEYS, or send a reference ({"env": ...} or {"file": ...})'
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise SecretError("cannot be stored: SECRET_KEYS holds a key that is not a Fernet key") from None


def stored_secret(settings: Settings, sent: Any, stored: Any) -> Any:
    """What to store for a secret field, given what was ``sent`` and what is ``stored`` now (None if new)."""
    if sent == SHOWN_WHEN_SET:
        if stored is None:
            raise SecretError("is not set yet: send its value")
        return stored
    if isinstance(sent, dict):
        if len(sent) == 1:
            ((kind, where),) = sent.items()
            if kind in REFERENCE_KINDS and isinstance(where, str) and where.strip():
                return {kind: where.strip()}
        raise SecretError('must be a string, {"env": "NAME"}, {"file": "/path"} or {"set": true}')
    if not isinstance(sent, str):
        raise SecretError('must be a string, {"env": "NAME"}, {"file": "/path"} or {"set": true}')
    return {"encrypted": _keys(settings).encrypt(sent.encode()).decode()}


def shown_secret(stored: Any) -> Any:
    """How the API shows a stored secret field: never the value."""
    if isinstance(stored, dict) and set(stored) <= set(REFERENCE_KINDS):
        return stored
    return SHOWN_WHEN_SET


def shown_config(task_type: TaskType | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as the API shows it: secret fields replaced by ``shown_secret``."""
    secret_keys = task_type.secret_keys if task_type else frozenset()
    return {key: shown_secret(value) if key in secret_keys else value for key, value in config.items()}


def config_summary(task_type: TaskType | None, config: Mapping[str, Any]) -> str | None:
    """``config`` in one line of at most ``SUMMARY_MAX_CHARS`` characters, as a list shows it: each field of
    the task type's form that has a value, in the form's order (a select's by its option's label, a URL as
    itself, a secret as set or by its reference, never its value). None when no field has a value, or the type
    is not installed."""
    if task_type is None:
        return None
    parts = []
    for config_field in task_type.config_fields:
        value = config.get(config_field.key)
        if value is None or value == "":
            continue
        labels = {option.value: option.label for option in config_field.options or ()}
        if config_field.secret:
            shown = shown_secret(value)
            where = next((f"from {kind} {shown[kind]}" for kind in REFERENCE_KINDS if kind in shown), "set")
            parts.append(f"{config_field.label}: {where}")
        elif isinstance(value, str) and value in labels:
            parts.append(labels[value])
        elif config_field.type == FieldType.URL:
            parts.append(str(value))
        elif (
            config_field.type == FieldType.JSON
            or isinstance(value, bool)
            or not isinstance(value, str | int | float)
        ):
            as_json = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            parts.append(f"{config_field.label}: {as_json}")
        else:
            parts.append(f"{config_field.label}: {value}")
    summary = " · ".join(parts)
    if len(summary) > SUMMARY_MAX_CHARS:
        return summary[: SUMMARY_MAX_CHARS - 1] + "…"
    return summary or None


def reveal_secrets(settings: Settings, task_type: TaskType, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with each secret field in plain text, for the handler; ``TaskFailed`` naming the field when
    one cannot be read."""
    revealed = dict(config)
    for key in task_type.secret_keys & set(config):
        revealed[key] = _reveal(settings, key, config[key])
    return revealed


def _reveal(settings: Settings, key: str, stored: Any) -> str | None:
    if stored is None or stored == "":
        return None
    kind, where = (
        next(iter(stored.items())) if isinstance(stored, dict) and len(stored) == 1 else (None, None)
    )
    if kind == "encrypted":
        try:
            return _keys(settings).decrypt(str(where).encode()).decode()
        except (InvalidToken, SecretError):
            raise TaskFailed(f"secret {key}: none of SECRET_KEYS decrypts it (was a key dropped?)") from None
    if kind == "env":
        value = os.environ.get(str(where))
        if value is None:
            raise TaskFailed(f"secret {key}: the environment variable {where} is not set on this worker")
        return value
    if kind == "file":
        try:
            return Path(str(where)).read_text().rstrip("\n")
        except OSError as exc:
            raise TaskFailed(f"secret {key}: cannot read {where}: {exc.strerror}") from None
    raise TaskFailed(f"secret {key}: stored in a form this worker does not know")


def hidden_secrets(revealed: Mapping[str, Any], task_type: TaskType) -> Callable[[str | None], str | None]:
    """A function that masks every revealed secret value in a text (a handler's error or result line)."""
    values = sorted(
        (str(revealed[key]) for key in task_type.secret_keys if revealed.get(key)), key=len, reverse=True
    )
    values = [value for value in values if len(value) >= SHORTEST_MASKED]

    def hide(text: str | None) -> str | None:
        if text is None:
            return None
        for value in values:
            text = text.replace(value, MASK)
        return text

    return hide


def rotate_secrets(settings: Settings, config: Mapping[str, Any], task_type: TaskType) -> dict[str, Any]:
    """``config`` with each encrypted secret re-encrypted under the first of ``SECRET_KEYS``."""
    keys = _keys(settings)
    rotated = dict(config)
    for key in task_type.secret_keys & set(config):
        stored = config[key]
        if isinstance(stored, dict) and "encrypted" in stored:
            rotated[key] = {"encrypted": keys.rotate(str(stored["encrypted"]).encode()).decode()}
    return rotated
