// The run history of one task (or one system task, or of every task), paginated by the server, narrowed to one
// outcome, to a time range (when an entry was queued) and, for every task's, to user tasks only, if asked. Its
// entries are attempts of runs, and the slots that did not run: a missed entry covers a range of slots (its span
// and count shown), a skipped one a slot; those, and abandoned runs, say why in the row.

import { BackfillForm } from "./backfill-form.js";
import { isRunInProgress, RUN_STATUS_FILTERS, runStatusBadge, systemBadge, triggerBadge } from "./badges.js";
import { openDialog, setUpDialog } from "./dialog.js";
import { h } from "./dom.js";
import { formatCompact, formatDuration, formatExact, formatSeconds, utcFromLocalInput } from "./format.js";
import { icon } from "./icons.js";

// The columns of one task's history; every task's has a Task column too.
const COLUMN_COUNT = 6;
const SPAN_FIELDS = ["from", "to"];
const IN_PROGRESS_POLL_MS = 1500;
// Entries whose error message is the reason they did not run (or were given up): shown in the row itself.
const REASON_IN_ROW = new Set(["missed", "skipped", "abandoned"]);

function timeOrDash(iso, emptyText) {
  if (!iso) return h("span", { class: "muted" }, emptyText);
  return h("time", { datetime: iso, title: formatExact(iso) }, formatSeconds(iso));
}

/**
 * What a run has to read beyond its row: its error, the handler's output (its result line: an HTTP status and
 * excerpt...), and the one-off config of a Run Now that carried one.
 */
function runDetails(run) {
  const boxes = [];
  if (run.errorMessage && !REASON_IN_ROW.has(run.status)) {
    boxes.push(
      h(
        "div",
        { class: "error-box", "data-testid": "history-error" },
        h("strong", {}, run.status === "failed" ? "Error" : "Details"),
        h("pre", {}, run.errorMessage),
      ),
    );
  }
  if (run.output) {
    boxes.push(
      h(
        "div",
        { class: "detail-box", "data-testid": "history-output" },
        h("strong", {}, "Output"),
        h("pre", {}, run.output),
      ),
    );
  }
  if (run.configOverride) {
    boxes.push(
      h(
        "div",
        { class: "detail-box", "data-testid": "history-override" },
        h("strong", {}, "Config for this run only (Run now override)"),
        h("pre", {}, JSON.stringify(run.configOverride, null, 2)),
      ),
    );
  }
  return boxes;
}

/** A missed entry's slots: "missed 43,200 slots: 2026-11-01 00:00 → 2026-11-30 23:59", in local time. */
function missedSpan(run) {
  const count = run.missedSlots ?? 0;
  const first = run.scheduledFor;
  const last = run.lastSlot ?? first;
  const at = (iso) => h("time", { datetime: iso, title: formatExact(iso) }, formatCompact(iso));
  return h(
    "div",
    { class: "small warn-text missed-span", "data-testid": "history-missed-span" },
    `missed ${count.toLocaleString("en-GB")} slot${count === 1 ? "" : "s"}: `,
    // "first →" holds together, so the span breaks (if it must) before its last slot, not at the arrow.
    last && last !== first ? [h("span", { class: "nowrap" }, at(first), " →"), " ", at(last)] : at(first),
  );
}

/** Whose run it is, in every task's history: its task's name (as when it was queued), or a system task's id. */
function taskCell(run) {
  const name = run.systemTask
    ? [h("span", {}, run.systemTask), " ", systemBadge()]
    : (run.scheduleName ?? `Task ${run.scheduleId}`);
  return h("td", { "data-label": "Task", "data-testid": "history-task" }, h("div", { class: "task-name" }, name));
}

function durationText(run) {
  if (run.durationMs !== null && run.durationMs !== undefined) return formatDuration(run.durationMs);
  if (run.status === "running" && run.startedAt)
    return `${formatDuration(Date.now() - new Date(run.startedAt).getTime())} so far`;
  return "—";
}

/** Which attempt of its run; an entry that is no attempt (missed, skipped before it was queued) says so. */
function attemptText(run) {
  if (run.attempt === 0) {
    return h("span", { class: "muted", title: "Not an attempt: nothing was started for it." }, "—");
  }
  return String(run.attempt ?? 1);
}

/**
 * Parameters:
 *   api: the REST client (listHistory, backfillTask).
 *   onError(error): a page failed to load.
 *   permissions: the user's (a Permissions), for Backfill….
 */
export class HistoryDialog {
  constructor({ api, onError, permissions }) {
    this.api = api;
    this.onError = onError;
    this.target = null;
    this.page = 1;
    this.pageSize = 10;
    this.expanded = new Set();
    this.pollTimer = null;
    this.loadSeq = 0;

    this.dialog = document.getElementById("history-dialog");
    this.titleEl = document.getElementById("history-title");
    this.rowsEl = document.getElementById("history-rows");
    this.rangeEl = document.getElementById("history-range");
    this.pageLabel = document.getElementById("history-page-label");
    this.prevButton = document.getElementById("history-prev");
    this.nextButton = document.getElementById("history-next");
    this.pageSizeSelect = document.getElementById("history-page-size");
    this.statusSelect = document.getElementById("history-status-filter");
    this.statusSelect.replaceChildren(
      h("option", { value: "" }, "All outcomes"),
      ...RUN_STATUS_FILTERS.map((status) => h("option", { value: status.value }, status.label)),
    );
    this.spanInputs = { from: document.getElementById("history-from"), to: document.getElementById("history-to") };
    this.spanError = document.getElementById("history-span-error");
    this.hideSystemField = document.getElementById("history-hide-system-field");
    this.hideSystemInput = document.getElementById("history-hide-system");
    this.taskColumn = document.getElementById("history-task-column");

    setUpDialog(this.dialog, {
      closeOnBackdrop: true,
      onClose: () => {
        clearTimeout(this.pollTimer);
        this.target = null;
      },
    });
    this.prevButton.addEventListener("click", () => this.goTo(this.page - 1));
    this.nextButton.addEventListener("click", () => this.goTo(this.page + 1));
    this.pageSizeSelect.addEventListener("change", () => {
      this.pageSize = Number(this.pageSizeSelect.value);
      this.goTo(1);
    });
    for (const control of [this.statusSelect, this.hideSystemInput, ...Object.values(this.spanInputs)]) {
      control.addEventListener("change", () => {
        this.expanded.clear();
        this.goTo(1);
      });
    }
    // A backfill's runs are the newest: show the first page, where they appear.
    this.backfill = new BackfillForm({ api, onQueued: () => this.goTo(1), permissions });
  }

  /** Every task's history (not one task's): it names each run's task, and can leave out the system tasks. */
  get isOfEveryTask() {
    return this.target !== null && this.target.scheduleId === undefined && this.target.systemTask === undefined;
  }

  get columnCount() {
    return this.isOfEveryTask ? COLUMN_COUNT + 1 : COLUMN_COUNT;
  }

  /** The filters as the API takes them: the time range typed in the viewer's zone, sent in UTC. */
  filters() {
    return {
      status: this.statusSelect.value || undefined,
      from: utcFromLocalInput(this.spanInputs.from.value) ?? undefined,
      to: utcFromLocalInput(this.spanInputs.to.value) ?? undefined,
      includeSystem: this.isOfEveryTask && this.hideSystemInput.checked ? false : undefined,
    };
  }

  /** The server's reason beside the time range (a 422 naming from or to); cleared with no argument. */
  showSpanError(fieldErrors = {}) {
    const reasons = SPAN_FIELDS.filter((field) => fieldErrors[field]).map(
      (field) => `${field === "from" ? "From" : "To"}: ${[fieldErrors[field]].flat().join(" ")}`,
    );
    this.spanError.textContent = reasons.join(" ");
    this.spanError.classList.toggle("visible", reasons.length > 0);
    for (const field of SPAN_FIELDS) {
      if (fieldErrors[field]) this.spanInputs[field].setAttribute("aria-invalid", "true");
      else this.spanInputs[field].removeAttribute("aria-invalid");
    }
    return reasons.length > 0;
  }

  get isOpen() {
    return this.dialog.open;
  }

  /**
   * Open for a user task (`{scheduleId, scheduleType}`), a system task (`{systemTask}`) or, with neither, every
   * task, titled with its name. A user task with slots (not manual) offers Backfill….
   */
  open({ name, scheduleId, systemTask, scheduleType }) {
    this.target = { scheduleId, systemTask };
    this.backfill.reset({ scheduleId, scheduleType });
    this.page = 1;
    this.expanded.clear();
    this.statusSelect.value = "";
    for (const input of Object.values(this.spanInputs)) input.value = "";
    this.showSpanError();
    this.hideSystemInput.checked = false;
    this.hideSystemField.hidden = !this.isOfEveryTask;
    this.taskColumn.hidden = !this.isOfEveryTask;
    this.dialog.classList.toggle("is-of-every-task", this.isOfEveryTask);
    this.titleEl.textContent = `Run history: ${name}`;
    this.rowsEl.replaceChildren(h("tr", {}, h("td", { colspan: this.columnCount, class: "muted" }, "Loading runs…")));
    this.rangeEl.textContent = "";
    openDialog(this.dialog);
    this.load();
  }

  goTo(page) {
    this.page = Math.max(1, page);
    this.load();
  }

  /** Reload the current page (the page's auto-refresh calls this too). */
  async load() {
    if (!this.target) return;
    clearTimeout(this.pollTimer);
    const seq = ++this.loadSeq;
    let result;
    try {
      result = await this.api.listHistory({
        ...this.target,
        ...this.filters(),
        page: this.page,
        pageSize: this.pageSize,
      });
    } catch (error) {
      if (seq !== this.loadSeq || !this.isOpen) return;
      if (!(error.status === 422 && this.showSpanError(error.fieldErrors))) this.onError(error);
      return;
    }
    if (seq !== this.loadSeq || !this.isOpen) return;
    this.showSpanError();
    const { data: runs, pagination } = result;
    if (!runs.length && this.page > 1 && pagination.total > 0) {
      this.goTo(pagination.totalPages || 1); // the page emptied under us (retention); show the last one
      return;
    }
    this.render(runs, pagination);
    // While something is queued or running, watch it closely so the operator sees it finish.
    if (runs.some((run) => isRunInProgress(run.status))) {
      this.pollTimer = setTimeout(() => this.load(), IN_PROGRESS_POLL_MS);
    }
  }

  render(runs, { total, totalPages }) {
    const first = total === 0 ? 0 : (this.page - 1) * this.pageSize + 1;
    const last = Math.min(total, (this.page - 1) * this.pageSize + runs.length);
    this.rangeEl.textContent = `${first}–${last} of ${total}`;
    this.pageLabel.textContent = `Page ${total === 0 ? 0 : this.page} of ${totalPages}`;
    this.prevButton.disabled = this.page <= 1;
    this.nextButton.disabled = this.page >= totalPages;
    if (!runs.length) {
      this.rowsEl.replaceChildren(
        h(
          "tr",
          { class: "empty-row" },
          h("td", { colspan: this.columnCount, "data-testid": "history-empty" }, this.emptyMessage()),
        ),
      );
      return;
    }
    this.rowsEl.replaceChildren(...runs.flatMap((run) => this.renderRun(run)));
  }

  emptyMessage() {
    const { status, ...others } = this.filters();
    const narrowed = Object.values(others).some((value) => value !== undefined);
    if (status) {
      const outcome = this.statusSelect.selectedOptions[0].label.toLowerCase();
      return narrowed
        ? `No ${outcome} entries match the other filters. Choose “All outcomes” to see more.`
        : `No ${outcome} entries. Choose “All outcomes” to see the whole history.`;
    }
    if (narrowed) return "No entries match these filters. Clear the time range or show system runs to see more.";
    return "No runs yet. Each run appears here as soon as it is queued, whether its schedule, Run now or a backfill started it.";
  }

  renderRun(run) {
    const details = runDetails(run);
    const hasDetail = details.length > 0;
    const detailId = `run-detail-${run.id}`;
    const isExpanded = this.expanded.has(run.id);
    const toggle = hasDetail
      ? h(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-icon expand-toggle",
            "aria-expanded": String(isExpanded),
            "aria-controls": detailId,
            "aria-label": isExpanded ? "Hide details" : "Show details",
            "data-testid": "history-expand",
          },
          icon("chevron"),
        )
      : null;
    // A missed entry, or a slot skipped before it was queued, is no attempt (attempt 0): it says why, in the row.
    const notAnAttempt = run.attempt === 0 && !isRunInProgress(run.status);
    const reason = REASON_IN_ROW.has(run.status) ? run.errorMessage : null;
    const missed = run.status === "missed";
    const scheduled = [
      missed // from its first slot (scheduledFor) to its last
        ? missedSpan(run)
        : timeOrDash(run.scheduledFor, run.triggeredBy === "manual" ? "On demand" : "—"),
    ];
    if (!missed && run.missedSlots > 0) {
      // Before missed entries of their own, a run carried the count of the slots it stood in for.
      scheduled.push(
        h(
          "div",
          {
            class: "small warn-text",
            title: "Slots that passed while the scheduler could not run them; they were not run one by one.",
          },
          `+${run.missedSlots} missed slot${run.missedSlots === 1 ? "" : "s"}`,
        ),
      );
    }
    const row = h(
      "tr",
      {
        "data-testid": "history-row",
        "data-run-id": run.id,
        "data-status": run.status,
        class: hasDetail ? "has-detail" : "",
      },
      this.isOfEveryTask ? taskCell(run) : null,
      h(
        "td",
        { "data-label": "Status" },
        h("div", { class: "status-cell" }, toggle, runStatusBadge(run.status)),
        reason && !notAnAttempt
          ? h("p", { class: "small history-reason", "data-testid": "history-reason" }, reason)
          : null,
      ),
      h(
        "td",
        { "data-label": "Trigger" },
        triggerBadge(run.triggeredBy),
        run.configOverride
          ? h("div", { class: "small muted", "data-testid": "run-override-note" }, "with config override")
          : null,
      ),
      h("td", { "data-label": "Scheduled for" }, scheduled),
      notAnAttempt
        ? // Nothing started, so nothing to time: the reason takes the place of the run's start, duration and attempt.
          h(
            "td",
            { colspan: 3, class: "history-why", "data-label": "Why it did not run" },
            h("p", { class: "small history-reason", "data-testid": "history-reason" }, reason ?? "—"),
          )
        : [
            h(
              "td",
              { "data-label": "Started", "data-testid": "history-started" },
              timeOrDash(run.startedAt, run.status === "queued" ? "Waiting…" : "—"),
            ),
            h("td", { "data-label": "Duration", "data-testid": "history-duration" }, durationText(run)),
            h("td", { "data-label": "Attempt", "data-testid": "history-attempt" }, attemptText(run)),
          ],
    );
    if (!hasDetail) return [row];
    const detail = h(
      "tr",
      { class: "detail-row", id: detailId, hidden: !isExpanded, "data-testid": "history-detail" },
      h("td", { colspan: this.columnCount }, h("div", { class: "detail-stack" }, details)),
    );
    const flip = () => {
      const open = detail.hidden;
      detail.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      toggle.setAttribute("aria-label", open ? "Hide details" : "Show details");
      if (open) this.expanded.add(run.id);
      else this.expanded.delete(run.id);
    };
    row.addEventListener("click", (event) => {
      if (window.getSelection()?.toString()) return; // selecting text is not a click
      if (event.target.closest("button") && event.target.closest("button") !== toggle) return;
      flip();
    });
    return [row, detail];
  }
}
