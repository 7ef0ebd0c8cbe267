"""The proof of concept's simulated task types: they only take time. Offered with ``DEMO_TASK_TYPES=true``
(``make run`` turns it on), for trying cronwork out; they stand in for real integrations."""

from __future__ import annotations

import time

from shared.task_types import ConfigField, FieldType, Option, RunContext, TaskType


def simulated_work(context: RunContext) -> str:
    """Sleep ``SIMULATED_WORK_MS``, as the proof of concept's handlers did."""
    time.sleep(context.settings.simulated_work_ms / 1000)
    return f"simulated {context.settings.simulated_work_ms} ms of work"


REPORT_PUBLISH = TaskType(
    id="report_publish",
    label="Report Publishing",
    description="Generates and publishes a report (simulated)",
    handler=simulated_work,
    demo=True,
    config_fields=(
        ConfigField(
            "reportId",
            "Report",
            FieldType.SELECT,
            required=True,
            options=(
                Option("compliance-weekly", "Weekly Compliance Report"),
                Option("usage-monthly", "Monthly Usage Report"),
                Option("billing-summary", "Billing Summary"),
            ),
        ),
    ),
)

DATA_EXPORT = TaskType(
    id="data_export",
    label="Data Export",
    description="Exports data to a file (simulated)",
    handler=simulated_work,
    demo=True,
    config_fields=(
        ConfigField(
            "format",
            "Export Format",
            FieldType.SELECT,
            required=True,
            options=(Option("csv", "CSV"), Option("json", "JSON"), Option("xlsx", "Excel")),
        ),
    ),
)
