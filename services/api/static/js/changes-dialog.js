// The changes to one task, from the audit trail (GET /audit): who did what and when, newest first, paginated by
// the server; an edit shows each field it changed, as it was and as it became.

import { openDialog, setUpDialog } from "./dialog.js";
import { h } from "./dom.js";
import { formatExact, formatSeconds } from "./format.js";

const PAGE_SIZE = 20;

// What each action did, as the sentence after its actor ("ada@example.com edited it").
const ACTIONS = {
  create: "created it",
  update: "edited it",
  delete: "deleted it",
  enable: "enabled (resumed) it",
  disable: "disabled (paused) it",
  runNow: "ran it now",
  backfill: "backfilled it",
  tokenCreate: "created an API token",
  tokenRevoke: "revoked an API token",
};

/** A value as the diff shows it: text as it is, nothing as "(none)", anything else as compact JSON. */
function shownValue(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "(none)");
  if (typeof value === "string") return value === "" ? h("span", { class: "muted" }, "(empty)") : value;
  return JSON.stringify(value);
}

/**
 * The fields an action set, one row each: an edit's as before → after; a creation's as the values it was created
 * with (there was nothing before).
 */
function diffTable(changes, { created }) {
  const headings = created ? ["Field", "Value"] : ["Field", "Before", "After"];
  return h(
    "table",
    { class: "change-diff", "data-testid": "change-diff" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        headings.map((heading) => h("th", { scope: "col" }, heading)),
      ),
    ),
    h(
      "tbody",
      {},
      Object.entries(changes).map(([field, { before, after }]) =>
        h(
          "tr",
          { "data-testid": "change-field", "data-field": field },
          h("th", { scope: "row" }, field),
          created
            ? null
            : h("td", { class: "change-before", "data-testid": "change-before" }, h("del", {}, shownValue(before))),
          h("td", { class: "change-after", "data-testid": "change-after" }, h("ins", {}, shownValue(after))),
        ),
      ),
    ),
  );
}

/** What else the action names (a Run Now's run, a backfill's window), as "key: value" pairs. */
function detailLine(detail) {
  const pairs = Object.entries(detail ?? {});
  if (!pairs.length) return null;
  return h(
    "p",
    { class: "small muted change-detail", "data-testid": "change-detail" },
    pairs.map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`).join(" · "),
  );
}

function renderEvent(event) {
  const changes = event.changes && Object.keys(event.changes).length ? event.changes : null;
  return h(
    "li",
    { class: "change-item", "data-testid": "change-item", "data-action": event.action },
    h(
      "p",
      { class: "change-head" },
      h("strong", { "data-testid": "change-actor" }, event.actor),
      " ",
      h("span", { "data-testid": "change-action" }, ACTIONS[event.action] ?? event.action),
      " ",
      h("time", { datetime: event.at, title: formatExact(event.at), class: "muted" }, formatSeconds(event.at)),
    ),
    changes ? diffTable(changes, { created: event.action === "create" }) : null,
    detailLine(event.detail),
  );
}

/**
 * Parameters:
 *   api: the REST client (listAudit).
 *   onError(error): a page failed to load.
 */
export class ChangesDialog {
  constructor({ api, onError }) {
    this.api = api;
    this.onError = onError;
    this.scheduleId = null;
    this.page = 1;
    this.loadSeq = 0;
    this.dialog = document.getElementById("changes-dialog");
    this.titleEl = document.getElementById("changes-title");
    this.listEl = document.getElementById("changes-list");
    this.rangeEl = document.getElementById("changes-range");
    this.pageLabel = document.getElementById("changes-page-label");
    this.prevButton = document.getElementById("changes-prev");
    this.nextButton = document.getElementById("changes-next");
    setUpDialog(this.dialog, { closeOnBackdrop: true, onClose: () => (this.scheduleId = null) });
    this.prevButton.addEventListener("click", () => this.goTo(this.page - 1));
    this.nextButton.addEventListener("click", () => this.goTo(this.page + 1));
  }

  get isOpen() {
    return this.dialog.open;
  }

  /** Open on the changes to the task `{id, name}`. */
  open(task) {
    this.scheduleId = task.id;
    this.page = 1;
    this.titleEl.textContent = `Changes: ${task.name}`;
    this.listEl.replaceChildren(h("li", { class: "muted" }, "Loading changes…"));
    this.rangeEl.textContent = "";
    openDialog(this.dialog);
    this.load();
  }

  goTo(page) {
    this.page = Math.max(1, page);
    this.load();
  }

  async load() {
    if (this.scheduleId === null) return;
    const seq = ++this.loadSeq;
    let result;
    try {
      result = await this.api.listAudit({ scheduleId: this.scheduleId, page: this.page, pageSize: PAGE_SIZE });
    } catch (error) {
      if (seq === this.loadSeq && this.isOpen) this.onError(error);
      return;
    }
    if (seq !== this.loadSeq || !this.isOpen) return;
    const { data: events, pagination } = result;
    const { total, totalPages } = pagination;
    const first = total === 0 ? 0 : (this.page - 1) * PAGE_SIZE + 1;
    const last = Math.min(total, (this.page - 1) * PAGE_SIZE + events.length);
    this.rangeEl.textContent = `${first}–${last} of ${total}`;
    this.pageLabel.textContent = `Page ${total === 0 ? 0 : this.page} of ${totalPages}`;
    this.prevButton.disabled = this.page <= 1;
    this.nextButton.disabled = this.page >= totalPages;
    this.listEl.replaceChildren(
      ...(events.length
        ? events.map(renderEvent)
        : [h("li", { class: "muted", "data-testid": "changes-empty" }, "No changes recorded for this task yet.")]),
    );
  }
}
