// Coloured labels for run outcomes and triggers, shared by the task table and the history dialog, and for a task's
// trouble (broken, overdue, failing again and again).

import { h } from "./dom.js";
import { formatExact } from "./format.js";

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

/** A task whose due slot nothing has run past the pump's grace period (the server's `overdue`). */
export function overdueBadge() {
  return h(
    "span",
    {
      class: "badge badge-overdue",
      title:
        "Its next run is overdue: the slot fell due longer ago than the scheduler's grace period and nothing has " +
        "run it. Check that the workers and the beat are running (and reach the broker and the database).",
      "data-testid": "task-overdue",
    },
    h("span", { class: "badge-dot", "aria-hidden": "true" }),
    "Overdue",
  );
}

/**
 * A task whose latest finished runs failed, `streak` of them in a row: "Failed 3× in a row", its last error in
 * the tooltip (and in its history).
 */
export function failureStreakBadge({ failureStreak: streak, lastError, lastErrorAt }) {
  const when = lastErrorAt ? ` (${formatExact(lastErrorAt)})` : "";
  const error = lastError ? `Last error${when}: ${lastError}` : "No error message was recorded.";
  return h(
    "span",
    {
      class: "badge badge-streak",
      title: `Its last ${streak === 1 ? "run" : `${streak} runs`} failed. ${error} Open its History for each run.`,
      "data-testid": "task-failure-streak",
    },
    h("span", { class: "badge-dot", "aria-hidden": "true" }),
    streak === 1 ? "Failed last run" : `Failed ${streak}× in a row`,
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
