// The rows of the two task tables: your tasks (with actions) and the built-in system tasks (read-only).

import { brokenBadge, failureStreakBadge, overdueBadge, runStatusBadge, systemBadge } from "./badges.js";
import { h } from "./dom.js";
import { formatExact, formatRelative, formatSeconds, formatShort } from "./format.js";
import { icon } from "./icons.js";
import { requirePermission } from "./permissions.js";

const COLUMN_COUNT = 8;

/** A table cell; `label` is the column name shown beside the value when the table turns into cards on phones. */
function cell(label, ...children) {
  return h("td", { "data-label": label }, h("div", { class: "cell-body" }, ...children));
}

/** A time as "5m ago" / "in 3m" over "27 Nov 14:03", with the exact date on hover. */
function timeCell(label, iso, emptyText, testId) {
  if (!iso) return cell(label, h("span", { class: "muted", "data-testid": testId }, emptyText));
  return cell(
    label,
    h(
      "time",
      { datetime: iso, title: formatExact(iso), class: "time-stack", "data-testid": testId },
      h("span", { class: "time-relative" }, formatRelative(iso)),
      h("span", { class: "time-absolute muted" }, formatShort(iso)),
    ),
  );
}

/** `description` is the server's words for when the task runs: the page never describes a schedule itself. */
function scheduleCell(task, description) {
  const details = [];
  if (task.scheduleType === "cron") details.push(h("code", { class: "cron-code" }, task.cronExpression));
  if (task.scheduleType === "cron" && task.timezone && task.timezone !== "UTC") {
    details.push(
      h("span", { class: "tz-chip", title: "The cron expression is evaluated in this time zone" }, task.timezone),
    );
  }
  return cell(
    "Schedule",
    h("div", { class: "schedule-text", "data-testid": "task-schedule" }, description),
    details.length ? h("div", { class: "schedule-details" }, details) : null,
  );
}

/** Its config in one line, in the server's words: the list carries no config, only this summary of it. */
function configSummary(task) {
  if (!task.configSummary) return null;
  return h("div", { class: "muted small truncate", title: task.configSummary }, task.configSummary);
}

/** Its labels as compact chips; pressing one narrows the list to the tasks that carry it. */
function labelChips(task, onLabel) {
  const labels = Object.entries(task.labels ?? {});
  if (!labels.length) return null;
  return h(
    "ul",
    { class: "label-chips", "aria-label": "Labels" },
    labels.map(([key, value]) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "label-chip",
            title: `Show only tasks labelled ${key}=${value}`,
            "data-testid": "row-label",
            onclick: () => onLabel(`${key}=${value}`),
          },
          h("span", { class: "label-key" }, key),
          h("span", { class: "label-value" }, value),
        ),
      ),
    ),
  );
}

/** Who answers for it (its owner, if set), over who created it. */
function ownerCell(task) {
  return cell(
    "Owner",
    task.owner
      ? h("span", { class: "truncate owner", title: task.owner, "data-testid": "row-owner" }, task.owner)
      : h("span", { class: "muted", "data-testid": "row-owner" }, "No owner"),
    h(
      "span",
      { class: "muted small truncate created-by", title: `Created by ${task.createdBy ?? ""}` },
      `Created by ${task.createdBy ?? "unknown"}`,
    ),
  );
}

function statusCell(task) {
  const stateLabel = task.enabled ? "Enabled" : "Disabled";
  return cell(
    "Status",
    h(
      "div",
      { class: "status-stack" },
      h(
        "span",
        { class: `pill ${task.enabled ? "pill-on" : "pill-off"}`, "data-testid": "task-enabled-state" },
        stateLabel,
      ),
      task.lastRunStatus
        ? runStatusBadge(task.lastRunStatus)
        : h("span", { class: "muted small", "data-testid": "run-status" }, "Never run"),
      task.failureStreak >= 1 ? failureStreakBadge(task) : null,
    ),
  );
}

/** Whether the row shows trouble: its runs keep failing, or nothing runs its due slot. */
function isInTrouble(task) {
  return task.overdue || task.failureStreak >= 1;
}

/**
 * Its next run (and when it starts, when jitter puts that after its slot); without one, why not, in the server's
 * words (`nextRunNote`): shown for a task past its end, the tooltip of a manual or paused task's short label. A
 * broken task (its stored timing no longer gives slots) shows that, and why, whatever its next run says.
 */
function nextRunCell(task) {
  if (task.brokenReason) {
    return cell(
      "Next run",
      brokenBadge(),
      h("div", { class: "small broken-reason", "data-testid": "task-broken-reason" }, sentence(task.brokenReason)),
    );
  }
  if (task.nextRunAt) {
    const timed = timeCell("Next run", task.nextRunAt, "", "task-next-run");
    if (task.overdue) cellBody(timed).prepend(overdueBadge());
    const startsAt = task.nextRunStartsAt;
    if (startsAt && new Date(startsAt).getTime() !== new Date(task.nextRunAt).getTime()) {
      cellBody(timed).append(
        h(
          "div",
          {
            class: "muted small",
            title: `Its jitter starts it after its slot: ${formatExact(startsAt)}`,
            "data-testid": "task-next-start",
          },
          `starts ${formatSeconds(startsAt)}`,
        ),
      );
    }
    return timed;
  }
  const note = task.nextRunNote ?? "";
  let label = note ? sentence(note) : "Not scheduled";
  if (task.scheduleType === "manual") label = "Manual only";
  else if (!task.enabled) label = "Paused (disabled)";
  return cell(
    "Next run",
    h("span", { class: "muted next-run-note", title: note, "data-testid": "task-next-run" }, label),
  );
}

function cellBody(td) {
  return td.querySelector(".cell-body");
}

function sentence(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A row's action button; with `permission`, marked unavailable (and why) when the user lacks it. */
function actionButton({ name, label, testId, onClick, variant, busy = false, permission, permissions }) {
  const button = h(
    "button",
    {
      type: "button",
      class: `btn btn-icon btn-action btn-action-${variant}`,
      "aria-label": label,
      title: label,
      "data-testid": testId,
      "aria-busy": busy ? "true" : null,
      disabled: busy,
      onclick: onClick,
    },
    icon(busy ? "spinner" : name, busy ? "spin" : ""),
    busy ? h("span", { class: "visually-hidden" }, " (run in progress)") : null,
  );
  return permission ? requirePermission(button, permission, permissions) : button;
}

/**
 * Render your tasks. `handlers` has onRun/onToggle/onHistory/onChanges/onEdit/onDelete(task), isRunPending(task)
 * and onLabel("key=value") for a pressed label chip; `permissions` says which actions the user may take.
 */
export function renderTaskRows(tbody, tasks, { taskTypes, emptyMessage, permissions, ...handlers }) {
  if (!tasks.length) {
    tbody.replaceChildren(
      h("tr", { class: "empty-row" }, h("td", { colspan: COLUMN_COUNT, "data-testid": "tasks-empty" }, emptyMessage)),
    );
    return;
  }
  tbody.replaceChildren(
    ...tasks.map((task) => {
      const taskType = taskTypes.get(task.taskType);
      const pending = handlers.isRunPending(task);
      return h(
        "tr",
        {
          "data-testid": "task-row",
          "data-task-id": task.id,
          "data-task-name": task.name,
          class: [
            task.enabled ? "" : "is-disabled",
            task.brokenReason ? "is-broken" : "",
            isInTrouble(task) ? "is-trouble" : "",
          ]
            .join(" ")
            .trim(),
        },
        cell(
          "Name",
          h("div", { class: "task-name", "data-testid": "row-name" }, task.name),
          labelChips(task, handlers.onLabel),
        ),
        cell(
          "Type",
          h("div", { "data-testid": "task-type-label" }, taskType?.label ?? task.taskType),
          configSummary(task),
        ),
        scheduleCell(task, task.description),
        statusCell(task),
        timeCell("Last run", task.lastRunAt, "Never", "task-last-run"),
        nextRunCell(task),
        ownerCell(task),
        h(
          "td",
          { class: "col-actions", "data-label": "Actions" },
          h(
            "div",
            { class: "actions" },
            actionButton({
              name: "play",
              label: `Run “${task.name}” now`,
              testId: "run-now",
              variant: "run",
              busy: pending,
              onClick: () => handlers.onRun(task),
              permission: "runNow",
              permissions,
            }),
            actionButton({
              name: task.enabled ? "pause" : "resume",
              label: task.enabled ? `Pause “${task.name}”` : `Resume “${task.name}”`,
              testId: "toggle-enabled",
              variant: "toggle",
              onClick: () => handlers.onToggle(task),
              permission: "toggle",
              permissions,
            }),
            actionButton({
              name: "history",
              label: `History of “${task.name}”`,
              testId: "history",
              variant: "history",
              onClick: () => handlers.onHistory(task),
            }),
            actionButton({
              name: "changes",
              label: `Changes to “${task.name}”`,
              testId: "changes",
              variant: "changes",
              onClick: () => handlers.onChanges(task),
            }),
            actionButton({
              name: "edit",
              label: `Edit “${task.name}”`,
              testId: "edit",
              variant: "edit",
              onClick: () => handlers.onEdit(task),
              permission: "edit",
              permissions,
            }),
            actionButton({
              name: "trash",
              label: `Delete “${task.name}”`,
              testId: "delete",
              variant: "delete",
              onClick: () => handlers.onDelete(task),
              permission: "delete",
              permissions,
            }),
          ),
        ),
      );
    }),
  );
}

/** Render the built-in system tasks: SYSTEM badge, real last/next runs, History but nothing that changes them. */
export function renderSystemRows(tbody, systemTasks, { onHistory }) {
  if (!systemTasks.length) {
    tbody.replaceChildren(
      h("tr", { class: "empty-row" }, h("td", { colspan: COLUMN_COUNT }, "No system tasks are registered.")),
    );
    return;
  }
  tbody.replaceChildren(
    ...systemTasks.map((task) =>
      h(
        "tr",
        { "data-testid": "system-task-row", "data-system-task-id": task.id, "data-task-name": task.name },
        cell(
          "Name",
          h("div", { class: "task-name" }, h("span", { "data-testid": "row-name" }, task.name), " ", systemBadge()),
          task.description ? h("div", { class: "muted small" }, task.description) : null,
        ),
        cell("Type", "System"),
        scheduleCell({ ...task, scheduleType: "cron" }, task.scheduleDescription),
        cell(
          "Status",
          h(
            "div",
            { class: "status-stack" },
            h("span", { class: "pill pill-on" }, "Always on"),
            task.lastStatus ? runStatusBadge(task.lastStatus) : h("span", { class: "muted small" }, "Never run"),
          ),
        ),
        timeCell("Last run", task.lastRunAt, "Never", "task-last-run"),
        timeCell("Next run", task.nextRunAt, "Not scheduled", "task-next-run"),
        cell("Created by", h("span", { class: "muted" }, "cronwork (built in)")),
        h(
          "td",
          { class: "col-actions", "data-label": "Actions" },
          h(
            "div",
            { class: "actions" },
            h(
              "span",
              {
                class: "read-only",
                "data-testid": "read-only",
                title: "System tasks cannot be run, edited or deleted here",
              },
              icon("lock"),
              "Read-only",
            ),
            actionButton({
              name: "history",
              label: `History of “${task.name}”`,
              testId: "history",
              variant: "history",
              onClick: () => onHistory(task),
            }),
          ),
        ),
      ),
    ),
  );
}
