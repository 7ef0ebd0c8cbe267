// Backfill, from a task's history: run each slot of a past window that has no run yet, once. The window is typed
// in the viewer's own zone (datetime-local) and sent in UTC.

import { $, $$ } from "./dom.js";
import { localInputValue, utcFromLocalInput, viewerTimeZone } from "./format.js";
import { requirePermission } from "./permissions.js";
import { toast } from "./toast.js";

const DEFAULT_WINDOW_MS = 24 * 60 * 60 * 1000;
const FIELDS = ["from", "to"];

function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

/** What a backfill did, in words. */
export function describeBackfill({ slots, queued, alreadyRun }) {
  if (slots === 0) return "No slots in this window: nothing to queue.";
  if (queued === 0)
    return slots === 1
      ? "Nothing queued: the window's one slot already had a run."
      : `Nothing queued: all ${slots} slots already had a run.`;
  const already = alreadyRun
    ? `; ${plural(alreadyRun, "slot")} already had a run and ${alreadyRun === 1 ? "was" : "were"} left alone`
    : "";
  return `Queued ${plural(queued, "run")} for ${plural(slots, "slot")}${already}.`;
}

/**
 * The Backfill… action of the history dialog: a toggle that opens a from/to form, and the result line.
 *
 * Parameters:
 *   api: the REST client (backfillTask).
 *   onQueued(result): runs were queued (the history reloads to show them).
 *   permissions: the user's (a Permissions): without backfill, Backfill… is marked unavailable, saying why.
 */
export class BackfillForm {
  constructor({ api, onQueued, permissions }) {
    this.api = api;
    this.onQueued = onQueued;
    this.permissions = permissions;
    this.scheduleId = null;
    this.busy = false;

    this.actions = document.getElementById("history-actions");
    this.toggle = document.getElementById("backfill-toggle");
    this.form = document.getElementById("backfill-form");
    this.fromInput = document.getElementById("backfill-from");
    this.toInput = document.getElementById("backfill-to");
    this.submitButton = document.getElementById("backfill-submit");
    this.formError = document.getElementById("backfill-error");
    this.result = document.getElementById("backfill-result");
    document.getElementById("backfill-zone").textContent = viewerTimeZone;

    this.toggle.addEventListener("click", () => (this.form.hidden ? this.openForm() : this.closeForm()));
    document.getElementById("backfill-cancel").addEventListener("click", () => this.closeForm());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    for (const input of [this.fromInput, this.toInput]) {
      input.addEventListener("input", () => this.clearError(input === this.fromInput ? "from" : "to"));
    }
  }

  /** Offer it for a task with slots (`scheduleId`); hide it otherwise (a system task, a manual task). */
  reset({ scheduleId, scheduleType }) {
    const offered = scheduleId !== undefined && scheduleId !== null && scheduleType !== "manual";
    this.scheduleId = offered ? scheduleId : null;
    this.actions.hidden = !offered;
    requirePermission(this.toggle, "backfill", this.permissions);
    this.result.hidden = true;
    this.result.textContent = "";
    this.fromInput.value = "";
    this.toInput.value = "";
    this.closeForm();
  }

  /** Show the form: the window last typed for this task, else the last day up to now. */
  openForm() {
    const now = new Date();
    if (!this.toInput.value) this.toInput.value = localInputValue(now);
    if (!this.fromInput.value) this.fromInput.value = localInputValue(new Date(now.getTime() - DEFAULT_WINDOW_MS));
    this.toInput.max = localInputValue(now);
    this.fromInput.max = localInputValue(now);
    this.clearErrors();
    this.result.hidden = true;
    this.form.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.fromInput.focus();
  }

  closeForm() {
    this.form.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    this.clearErrors();
  }

  async submit() {
    if (this.busy || this.scheduleId === null) return;
    this.clearErrors();
    const span = { from: utcFromLocalInput(this.fromInput.value), to: utcFromLocalInput(this.toInput.value) };
    const missing = FIELDS.filter((field) => !span[field]);
    if (missing.length) {
      for (const field of missing) this.showError(field, ["Enter a date and time."]);
      return;
    }
    this.busy = true;
    this.submitButton.disabled = true;
    try {
      const result = await this.api.backfillTask(this.scheduleId, span);
      this.closeForm();
      this.result.textContent = describeBackfill(result);
      this.result.hidden = false;
      this.onQueued(result);
    } catch (error) {
      this.reportFailure(error);
    } finally {
      this.busy = false;
      this.submitButton.disabled = false;
    }
  }

  /** A 422 beside the field it names (from, to), anything else (a manual task, a failure) above the buttons. */
  reportFailure(error) {
    if (error.status === 403) toast(`Could not backfill: ${error.message}`, "error");
    const unplaced = [];
    for (const [field, reasons] of Object.entries(error.status === 422 ? error.fieldErrors : {})) {
      if (FIELDS.includes(field)) this.showError(field, reasons);
      else unplaced.push([reasons].flat().join(" "));
    }
    if (unplaced.length || error.status !== 422 || !Object.keys(error.fieldErrors).length) {
      this.formError.textContent = unplaced.length ? unplaced.join(" ") : error.message;
      this.formError.classList.add("visible");
    }
    $('[aria-invalid="true"]', this.form)?.focus();
  }

  showError(field, reasons) {
    const slot = $(`[data-error-for="${field}"]`, this.form);
    slot.textContent = [reasons].flat().join(" ");
    slot.classList.add("visible");
    const input = field === "from" ? this.fromInput : this.toInput;
    input.setAttribute("aria-invalid", "true");
  }

  clearError(field) {
    const slot = $(`[data-error-for="${field}"]`, this.form);
    slot.textContent = "";
    slot.classList.remove("visible");
    (field === "from" ? this.fromInput : this.toInput).removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const slot of $$(".field-error", this.form)) {
      slot.textContent = "";
      slot.classList.remove("visible");
    }
    for (const input of [this.fromInput, this.toInput]) input.removeAttribute("aria-invalid");
  }
}
