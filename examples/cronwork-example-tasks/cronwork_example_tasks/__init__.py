"""An example cronwork task type: append a line to a file on every run.

Everything a task type needs is here: its id, label and description, its config form (with a secret field),
its default attempts and time limit, and its handler, which gets the run's slot, id and attempt.
"""

from __future__ import annotations

from pathlib import Path

from shared.task_types import ConfigField, FieldType, RunContext, TaskFailed, TaskType


def append_line(context: RunContext) -> str:
    """Append ``line`` (``{scheduledFor}``, ``{runId}``, ``{attempt}`` filled in) to the file at ``path``."""
    slot = context.scheduled_for.isoformat().replace("+00:00", "Z") if context.scheduled_for else ""
    line = str(context.config.get("line") or "{scheduledFor} run {runId}").format(
        scheduledFor=slot, runId=context.run_id, attempt=context.attempt
    )
    if context.config.get("signature"):
        line += " signed"  # the secret itself stays out of the file, the result and any error
    try:
        with Path(context.config["path"]).open("a") as file:
            file.write(line + "\n")
    except OSError as exc:
        raise TaskFailed(f"cannot append to {context.config['path']}: {exc.strerror}") from None
    return f"appended {len(line)} characters"


APPEND_LINE = TaskType(
    id="example_append_line",
    label="Append a line (example plugin)",
    description="Appends a line to a file on the worker: the example of a task-type plugin",
    handler=append_line,
    max_attempts=2,
    time_limit_s=30,
    config_fields=(
        ConfigField("path", "File", FieldType.TEXT, required=True, help="A path on the worker"),
        ConfigField(
            "line", "Line", FieldType.TEXT, help="{scheduledFor}, {runId} and {attempt} are filled in"
        ),
        ConfigField(
            "signature", "Signing key", FieldType.TEXT, secret=True, help="An example of a secret field"
        ),
    ),
)
