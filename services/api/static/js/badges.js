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
  skipped: {
    label: "Skipped",
    hint: "Not run: the previous run was still unfinished (overlap policy skip), or the task was disabled or deleted after the slot fell due. The reason says which.",
  },
  missed: {
    label: "Missed",
    hint: "Slots that passed without a run (workers down, the task disabled) and that the misfire policy did not run. One entry covers a range of slots.",
  },
};

/** The outcomes a history can be narrowed to, in the order the filter offers them. */
export const RUN_STATUS_FILTERS = ["success", "failed", "skipped", "missed", "abandoned", "running", "queued"].map(
  (status) => ({ value: status, label: RUN_STATUSES[status].label }),
);

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

/** A task whose stored timing no longer gives slots: its chain stopped until its timing is edited. */
export function brokenBadge() {
  return h(
    "span",
    {
      class: "badge badge-broken",
      title: "Its stored timing no longer gives slots, so it starts no scheduled run. Edit its timing to mend it.",
      "data-testid": "task-broken",
    },
    h("span", { class: "badge-dot", "aria-hidden": "true" }),
    "Broken",
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
