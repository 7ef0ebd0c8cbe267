// Coloured labels for run outcomes and triggers, shared by the task table and the history dialog.

import { h } from "./dom.js";

const RUN_STATUSES = {
  queued: { label: "Queued", hint: "Waiting for a worker to pick it up." },
  running: { label: "Running", hint: "A worker is running it now." },
  success: { label: "Success", hint: "Finished without error." },
  failed: { label: "Failed", hint: "Finished with an error; open the run in History to read it." },
  abandoned: {
    label: "Abandoned",
    hint: "Given up without an outcome: its worker stopped (lease expired) or its schedule was deleted first. The error says which.",
  },
  skipped: { label: "Skipped", hint: "Not run: its schedule was disabled after the slot was claimed." },
};

const TRIGGERS = {
  schedule: { label: "Schedule", hint: "Started by the task's own schedule." },
  manual: { label: "Manual", hint: "Started by someone pressing Run now." },
  backfill: { label: "Backfill", hint: "Queued by a backfill of a past window, for a slot that had no run." },
  system: { label: "System", hint: "Started by the scheduler itself." },
};

export function runStatusBadge(status) {
  const known = RUN_STATUSES[status] ?? { label: status ?? "Unknown", hint: "" };
  return h(
    "span",
    { class: `badge badge-run badge-${status}`, title: known.hint, "data-testid": "run-status", "data-status": status },
    h("span", { class: "badge-dot", "aria-hidden": "true" }),
    known.label,
  );
}

export function triggerBadge(triggeredBy) {
  const known = TRIGGERS[triggeredBy] ?? { label: triggeredBy ?? "Unknown", hint: "" };
  return h(
    "span",
    { class: `badge badge-trigger badge-trigger-${triggeredBy}`, title: known.hint, "data-testid": "run-trigger" },
    known.label,
  );
}

export function systemBadge() {
  return h(
    "span",
    { class: "badge badge-system", title: "Built into the scheduler; read-only.", "data-testid": "system-badge" },
    "SYSTEM",
  );
}

export function isRunInProgress(status) {
  return status === "queued" || status === "running";
}
