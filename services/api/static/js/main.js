// The operator's page: wires the task tables, filters, dialogs and the refresh loop to the REST API.

import { api } from "./api.js";
import { isRunInProgress } from "./badges.js";
import { ChangesDialog } from "./changes-dialog.js";
import { confirmAction, setUpDialog } from "./dialog.js";
import { debounce, h, sameControlNow } from "./dom.js";
import { formatClock, formatDuration, viewerTimeZone } from "./format.js";
import { HistoryDialog } from "./history-dialog.js";
import { icon } from "./icons.js";
import { parseLabelSelector } from "./labels.js";
import { blockUnavailableControls, Permissions, requirePermission } from "./permissions.js";
import { TaskForm } from "./task-form.js";
import { renderSystemRows, renderTaskRows } from "./task-table.js";
import { toast } from "./toast.js";

const AUTO_REFRESH_MS = 20_000; // the seed page's cadence
const BUSY_REFRESH_MS = 5_000; // while a run shown in the table is queued or running
const RUN_WATCH_MS = 1_500;
const PAGE_SIZES = [25, 50, 100];
const STORAGE = { theme: "cronwork.theme", autoRefresh: "cronwork.autoRefresh" };

const state = {
  taskTypes: [],
  taskTypesById: new Map(),
  /** As the filter bar holds them; `label` is its text ("team=billing, tier=1"). */
  filters: { q: "", enabled: "", taskType: "", owner: "", label: "" },
  page: 1,
  pageSize: 25,
  tasks: [],
  pagination: { total: 0, totalPages: 0, page: 1 },
  systemTasks: [],
  autoRefresh: true,
  loading: false,
  loadSeq: 0,
  lastLoadedAt: 0,
  /** Run Now presses still queued or running: schedule id → {runId, name}. */
  pendingRuns: new Map(),
  /** What the signed-in user may do (GET /me); nothing until it is read. */
  permissions: new Permissions(null),
};

const el = (id) => document.getElementById(id);
let taskForm = null;
let historyDialog = null;
let changesDialog = null;
let autoTimer = null;
let busyTimer = null;
let watchTimer = null;
let timezonesPromise = null;
let openingEditor = false;

function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* private mode: the choice lasts for this visit only */
  }
}

// ---- theme -------------------------------------------------------------------------------------------------

function renderThemeToggle() {
  const dark = document.documentElement.dataset.theme === "dark";
  const button = el("theme-toggle");
  const label = dark ? "Switch to light theme" : "Switch to dark theme";
  button.replaceChildren(icon(dark ? "sun" : "moon"));
  button.setAttribute("aria-label", label);
  button.title = label;
}

function toggleTheme() {
  const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  storageSet(STORAGE.theme, next);
  renderThemeToggle();
}

// ---- filters and the URL -------------------------------------------------------------------------------------

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  state.filters.q = params.get("q") ?? "";
  state.filters.enabled = ["true", "false"].includes(params.get("enabled")) ? params.get("enabled") : "";
  state.filters.taskType = params.get("taskType") ?? "";
  state.filters.owner = params.get("owner") ?? "";
  state.filters.label = params.getAll("label").join(", ");
  state.page = Math.max(1, Number.parseInt(params.get("page") ?? "1", 10) || 1);
  const size = Number.parseInt(params.get("pageSize") ?? "", 10);
  state.pageSize = PAGE_SIZES.includes(size) ? size : 25;
}

/** Keep the filters in the address bar, so a filtered view can be bookmarked or shared. */
function writeUrl() {
  const params = new URLSearchParams();
  const { label, ...rest } = state.filters;
  for (const [key, value] of Object.entries(rest)) if (value) params.set(key, value);
  for (const selector of parseLabelSelector(label) ?? []) params.append("label", selector);
  if (state.page > 1) params.set("page", String(state.page));
  if (state.pageSize !== 25) params.set("pageSize", String(state.pageSize));
  const query = params.toString();
  window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
}

function hasFilters() {
  return Object.values(state.filters).some(Boolean);
}

/** The filters in the API's terms: the list, Pause matching and Resume matching send the same. */
function apiFilters() {
  const { q, enabled, taskType, owner, label } = state.filters;
  return { q, enabled, taskType, owner, labels: parseLabelSelector(label) ?? [] };
}

/** The active filters in words, for the confirmation of a bulk action. */
function describeFilters() {
  const { q, enabled, taskType, owner, label } = state.filters;
  const typeLabel = state.taskTypesById.get(taskType)?.label ?? taskType;
  return [
    q && `name contains “${q}”`,
    enabled && (enabled === "true" ? "enabled" : "disabled"),
    taskType && `type ${typeLabel}`,
    owner && `owner ${owner}`,
    ...(parseLabelSelector(label) ?? []).map((selector) => `label ${selector}`),
  ]
    .filter(Boolean)
    .join(", ");
}

/** The label filter's text, checked: null (and the reason shown) when a part is not key=value. */
function readLabelFilter(input) {
  const valid = parseLabelSelector(input.value) !== null;
  const error = el("filter-label-error");
  input.setAttribute("aria-invalid", String(!valid));
  error.textContent = valid ? "" : "Write labels as key=value, several separated by commas.";
  error.hidden = valid;
  return valid ? input.value.trim() : null;
}

function setUpFilters() {
  const search = el("filter-q");
  const enabled = el("filter-enabled");
  const type = el("filter-type");
  const owner = el("filter-owner");
  const label = el("filter-label");
  search.value = state.filters.q;
  enabled.value = state.filters.enabled;
  owner.value = state.filters.owner;
  label.value = state.filters.label;
  type.append(...state.taskTypes.map((taskType) => h("option", { value: taskType.id }, taskType.label)));
  type.value = state.filters.taskType;
  el("task-page-size").value = String(state.pageSize);

  const apply = () => {
    const labels = readLabelFilter(label);
    if (labels === null) return; // the list stays as it is until the labels read as key=value
    state.filters = {
      q: search.value.trim(),
      enabled: enabled.value,
      taskType: type.value,
      owner: owner.value.trim(),
      label: labels,
    };
    state.page = 1;
    loadTasks();
  };
  search.addEventListener("input", debounce(apply, 300));
  owner.addEventListener("input", debounce(apply, 300));
  label.addEventListener("input", debounce(apply, 300));
  el("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  enabled.addEventListener("change", apply);
  type.addEventListener("change", apply);
  el("filters-clear").addEventListener("click", () => {
    search.value = "";
    enabled.value = "";
    type.value = "";
    owner.value = "";
    label.value = "";
    apply();
    search.focus();
  });
  el("pause-matching").replaceChildren(icon("pause"), h("span", {}, "Pause matching"));
  el("pause-matching").addEventListener("click", () => setMatchingEnabled(false));
  el("resume-matching").replaceChildren(icon("resume"), h("span", {}, "Resume matching"));
  el("resume-matching").addEventListener("click", () => setMatchingEnabled(true));
  el("task-page-size").addEventListener("change", (event) => {
    state.pageSize = Number(event.target.value);
    state.page = 1;
    loadTasks();
  });
  el("task-prev").addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    loadTasks();
  });
  el("task-next").addEventListener("click", () => {
    state.page += 1;
    loadTasks();
  });
}

// ---- loading -------------------------------------------------------------------------------------------------

function showLoadError(error) {
  const banner = el("load-error");
  if (!error) {
    banner.hidden = true;
    return;
  }
  banner.replaceChildren(
    h("span", {}, `Could not load the tasks: ${error.message}`),
    h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", onclick: () => refresh({ manual: true }) },
      "Try again",
    ),
  );
  banner.hidden = false;
}

function setRefreshing(isRefreshing) {
  state.loading = isRefreshing;
  el("refresh-button").classList.toggle("is-spinning", isRefreshing);
  el("task-rows").setAttribute("aria-busy", String(isRefreshing));
}

async function loadTasks() {
  writeUrl();
  const seq = ++state.loadSeq;
  setRefreshing(true);
  try {
    const { data, pagination } = await api.listTasks({ page: state.page, pageSize: state.pageSize, ...apiFilters() });
    if (seq !== state.loadSeq) return true;
    if (!data.length && state.page > 1 && pagination.totalPages > 0) {
      state.page = pagination.totalPages; // the last page emptied (a delete, a filter); step back
      return loadTasks();
    }
    state.tasks = data;
    state.pagination = pagination;
    showLoadError(null);
    renderTasks();
    return true;
  } catch (error) {
    if (seq === state.loadSeq) showLoadError(error);
    return false;
  } finally {
    if (seq === state.loadSeq) setRefreshing(false);
  }
}

async function loadSystemTasks() {
  try {
    state.systemTasks = await api.listSystemTasks();
  } catch (error) {
    el("system-rows").replaceChildren(
      h("tr", {}, h("td", { colspan: 8, class: "muted" }, `Could not load the system tasks: ${error.message}`)),
    );
    return false;
  }
  keepingFocus(() =>
    renderSystemRows(el("system-rows"), state.systemTasks, {
      onHistory: (task) => historyDialog.open({ name: task.name, systemTask: task.id }),
    }),
  );
  return true;
}

/** Reload everything on screen. A manual refresh says so in a toast; every failure does. */
async function refresh({ manual = false } = {}) {
  clearTimeout(busyTimer);
  const [tasksOk, systemOk] = await Promise.all([loadTasks(), loadSystemTasks()]);
  if (historyDialog?.isOpen) historyDialog.load();
  if (changesDialog?.isOpen) changesDialog.load();
  state.lastLoadedAt = Date.now();
  renderUpdatedAt();
  if (manual && tasksOk && systemOk) toast("Task list refreshed.", "info");
  if (manual && !(tasksOk && systemOk)) toast("Refresh failed; the list may be out of date.", "error");
  if (state.autoRefresh && state.tasks.some((task) => isRunInProgress(task.lastRunStatus))) {
    busyTimer = setTimeout(() => refresh(), BUSY_REFRESH_MS);
  }
}

// ---- rendering -----------------------------------------------------------------------------------------------

/** Re-render rows without dropping a keyboard user's focus: it moves to the same button of the new row. */
function keepingFocus(render) {
  const focused = document.activeElement;
  render();
  if (focused && !focused.isConnected) sameControlNow(focused)?.focus();
}

function renderTasks() {
  keepingFocus(() =>
    renderTaskRows(el("task-rows"), state.tasks, {
      taskTypes: state.taskTypesById,
      emptyMessage: hasFilters()
        ? "No tasks match these filters."
        : "No tasks yet. Press “Add task” to schedule your first one.",
      // Also a run started by the schedule, another operator or before a reload: its status says so.
      isRunPending: (task) => state.pendingRuns.has(task.id) || isRunInProgress(task.lastRunStatus),
      permissions: state.permissions,
      onRun: runNow,
      onToggle: toggleTask,
      onHistory: (task) =>
        historyDialog.open({ name: task.name, scheduleId: task.id, scheduleType: task.scheduleType }),
      onChanges: (task) => changesDialog.open(task),
      onEdit: editTask,
      onDelete: deleteTask,
      onLabel: filterByLabel,
    }),
  );
  const { total, totalPages } = state.pagination;
  const first = total === 0 ? 0 : (state.page - 1) * state.pageSize + 1;
  const last = Math.min(total, (state.page - 1) * state.pageSize + state.tasks.length);
  el("task-range").textContent = `${first}–${last} of ${total}`;
  el("task-page-label").textContent = `Page ${total === 0 ? 0 : state.page} of ${totalPages}`;
  el("task-prev").disabled = state.page <= 1;
  el("task-next").disabled = state.page >= totalPages;
  el("filters-clear").hidden = !hasFilters();
  el("bulk-actions").hidden = !hasFilters();
}

function renderUpdatedAt() {
  const when = state.lastLoadedAt ? `Updated ${formatClock(new Date(state.lastLoadedAt))}` : "";
  el("updated-at").textContent = state.autoRefresh ? when : `${when} · auto-refresh paused`;
}

function renderAutoRefreshToggle() {
  const button = el("auto-refresh-toggle");
  button.setAttribute("aria-pressed", String(state.autoRefresh));
  button.replaceChildren(
    icon(state.autoRefresh ? "pause" : "resume"),
    h("span", {}, state.autoRefresh ? "Pause auto-refresh" : "Resume auto-refresh"),
  );
  button.title = state.autoRefresh
    ? "The list reloads every 20 seconds. Pause it to read without changes."
    : "Auto-refresh is paused. Resume to reload every 20 seconds.";
  renderUpdatedAt();
}

function startAutoRefresh() {
  clearInterval(autoTimer);
  if (!state.autoRefresh) return;
  autoTimer = setInterval(() => {
    if (!document.hidden) refresh();
  }, AUTO_REFRESH_MS);
}

function toggleAutoRefresh() {
  state.autoRefresh = !state.autoRefresh;
  storageSet(STORAGE.autoRefresh, state.autoRefresh ? "on" : "off");
  if (!state.autoRefresh) clearTimeout(busyTimer);
  renderAutoRefreshToggle();
  startAutoRefresh();
  toast(state.autoRefresh ? "Auto-refresh resumed (every 20 s)." : "Auto-refresh paused.", "info");
  if (state.autoRefresh) refresh();
}

// ---- actions -------------------------------------------------------------------------------------------------

async function runNow(task) {
  if (state.pendingRuns.has(task.id)) return;
  let run;
  try {
    run = await api.runTask(task.id);
  } catch (error) {
    toast(`Could not run “${task.name}”: ${error.message}`, "error");
    return;
  }
  state.pendingRuns.set(task.id, { runId: run.id, name: task.name });
  toast(`Queued a run of “${task.name}”. The button spins until it finishes.`, "info");
  renderTasks();
  if (historyDialog.isOpen) historyDialog.load();
  watchPendingRuns();
}

/** Follow each Run Now press until its history row leaves queued/running, then report the outcome. */
function watchPendingRuns() {
  clearTimeout(watchTimer);
  if (!state.pendingRuns.size) return;
  watchTimer = setTimeout(async () => {
    let finished = 0;
    for (const [scheduleId, pending] of [...state.pendingRuns]) {
      let runs;
      try {
        ({ data: runs } = await api.listHistory({ scheduleId, page: 1, pageSize: 50 }));
      } catch (error) {
        if (error.status === 404) state.pendingRuns.delete(scheduleId);
        continue;
      }
      const run = runs.find((candidate) => candidate.id === pending.runId);
      if (run && isRunInProgress(run.status)) continue;
      state.pendingRuns.delete(scheduleId);
      finished += 1;
      reportRunOutcome(pending.name, run);
    }
    if (finished) refresh();
    watchPendingRuns();
  }, RUN_WATCH_MS);
}

function reportRunOutcome(name, run) {
  if (!run) return; // pushed off the first page by newer runs; the table shows the outcome
  if (run.status === "success") {
    toast(
      `“${name}” ran successfully${run.durationMs != null ? ` in ${formatDuration(run.durationMs)}` : ""}.`,
      "success",
    );
  } else if (run.status === "failed") {
    toast(`“${name}” failed: ${run.errorMessage ?? "no error message"}. See its History.`, "error");
  } else {
    toast(`The run of “${name}” ended as ${run.status}.`, "info");
  }
}

/** Open the editor on the task as the server holds it now: a list row is a light copy, without its config. */
async function editTask(task) {
  if (openingEditor) return; // a second press while the first one's task loads
  openingEditor = true;
  let current;
  try {
    current = await api.getTask(task.id);
  } catch (error) {
    toast(`Could not open “${task.name}”: ${error.message}`, "error");
    if (error.status === 404) refresh();
    return;
  } finally {
    openingEditor = false;
  }
  taskForm.openForEdit(current);
}

/** Pause (disable) or resume (enable) one task, as the list shows it: a task changed since is left alone (412). */
async function toggleTask(task) {
  const verb = task.enabled ? "pause" : "resume";
  try {
    await api.updateTask(task, { enabled: !task.enabled });
  } catch (error) {
    const reason =
      error.status === 412
        ? "it was changed by someone else since the list was loaded. The list now shows it as it is."
        : error.message;
    toast(`Could not ${verb} “${task.name}”: ${reason}`, "error");
    if (error.status === 412 || error.status === 404) refresh();
    return;
  }
  toast(task.enabled ? `Paused “${task.name}”.` : `Resumed “${task.name}”.`, "success");
  refresh();
}

async function deleteTask(task) {
  const confirmed = await confirmAction({
    title: `Delete “${task.name}”?`,
    message: [
      "The task ",
      h("strong", { "data-testid": "confirm-task-name" }, `“${task.name}”`),
      " will stop running and be removed. This cannot be undone; to stop it for a while, edit it and turn off Enabled instead.",
    ],
    confirmLabel: "Delete task",
  });
  if (!confirmed) return;
  try {
    await api.deleteTask(task); // only as the list shows it: a task changed since is not deleted (412)
  } catch (error) {
    if (error.status === 412) {
      toast(
        `Did not delete “${task.name}”: it was changed by someone else since the list was loaded. The list now shows it as it is; delete it again if you still mean to.`,
        "error",
      );
      refresh();
      return;
    }
    toast(`Could not delete “${task.name}”: ${error.message}`, "error");
    return;
  }
  state.pendingRuns.delete(task.id);
  toast(`Deleted “${task.name}”.`, "success");
  refresh();
}

/** A label chip was pressed: add its label to the filter (once). */
function filterByLabel(selector) {
  const input = el("filter-label");
  const current = parseLabelSelector(input.value) ?? [];
  if (current.includes(selector)) return;
  input.value = [...current, selector].join(", ");
  input.dispatchEvent(new Event("input"));
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * Pause matching / Resume matching: after a confirmation that says how many tasks the filters select (on every
 * page, counted by the server), disable or enable every one of them with one request.
 */
async function setMatchingEnabled(enable) {
  const filters = apiFilters();
  const verb = enable ? "Resume" : "Pause";
  let pagination;
  try {
    ({ pagination } = await api.listTasks({ page: 1, pageSize: 1, ...filters }));
  } catch (error) {
    toast(`Could not count the matching tasks: ${error.message}`, "error");
    return;
  }
  if (!pagination.total) {
    toast(`No tasks match these filters: nothing to ${verb.toLowerCase()}.`, "info");
    return;
  }
  const count = `${pagination.totalIsEstimate ? "about " : ""}${plural(pagination.total, "task")}`;
  const confirmed = await confirmAction({
    title: `${verb} ${count}?`,
    message: [
      "Every task matching these filters (",
      h("span", { "data-testid": "confirm-filters" }, describeFilters()),
      "), ",
      h("strong", { "data-testid": "confirm-count" }, count),
      " on every page, ",
      enable
        ? "will be enabled and run on its schedule again from its next slot."
        : "will be disabled: it keeps its settings and history but starts no scheduled runs until resumed.",
      ` Tasks already ${enable ? "enabled" : "paused"} stay as they are.`,
    ],
    confirmLabel: `${verb} ${count}`,
    danger: !enable,
  });
  if (!confirmed) return;
  let changed;
  try {
    changed = await (enable ? api.resumeTasks(filters) : api.pauseTasks(filters));
  } catch (error) {
    toast(`Could not ${verb.toLowerCase()} the matching tasks: ${error.message}`, "error");
    return;
  }
  const done = enable ? "Resumed" : "Paused";
  const already = changed.length ? "" : ` They were all ${enable ? "enabled" : "paused"} already.`;
  toast(`${done} ${plural(changed.length, "task")}.${already}`, "success");
  refresh();
}

function loadTimezones() {
  timezonesPromise ??= api.listTimezones().catch((error) => {
    timezonesPromise = null;
    throw error;
  });
  return timezonesPromise;
}

// ---- start ---------------------------------------------------------------------------------------------------

async function loadTaskTypes() {
  try {
    state.taskTypes = await api.listTaskTypes();
  } catch (error) {
    const banner = el("load-error");
    banner.replaceChildren(
      h("span", {}, `Could not load the task types: ${error.message}`),
      h(
        "button",
        { type: "button", class: "btn btn-secondary btn-sm", onclick: () => window.location.reload() },
        "Reload",
      ),
    );
    banner.hidden = false;
    el("add-task-button").disabled = true;
  }
  state.taskTypesById = new Map(state.taskTypes.map((type) => [type.id, type]));
}

/** Who is signed in, and as which role: the header shows both, and the actions follow the role's permissions. */
async function loadMe() {
  let me;
  try {
    me = await api.whoAmI();
  } catch {
    return; // the tables' own loads report an identity problem (401) in the banner; nothing is offered meanwhile
  }
  state.permissions = new Permissions(me);
  el("signed-in-user").textContent = `Signed in as ${me.email}`;
  const role = el("user-role");
  role.textContent = state.permissions.roleLabel;
  role.title = state.permissions.roleHint;
  role.hidden = false;
}

/** Mark the page's own actions (not a row's: those are drawn with each row) unavailable without their permission. */
function applyPermissions() {
  requirePermission(el("add-task-button"), "create", state.permissions);
  requirePermission(el("pause-matching"), "toggle", state.permissions);
  requirePermission(el("resume-matching"), "toggle", state.permissions);
}

async function start() {
  el("viewer-timezone").textContent = viewerTimeZone;
  blockUnavailableControls();
  renderThemeToggle();
  el("theme-toggle").addEventListener("click", toggleTheme);

  el("refresh-button").replaceChildren(icon("refresh"), h("span", {}, "Refresh"));
  el("refresh-button").addEventListener("click", () => refresh({ manual: true }));
  el("all-history-button").replaceChildren(icon("history"), h("span", {}, "All runs"));
  el("all-history-button").addEventListener("click", () => historyDialog.open({ name: "every task" }));
  el("add-task-button").replaceChildren(icon("plus"), h("span", {}, "Add task"));
  el("add-task-button").addEventListener("click", () => taskForm.openForCreate());
  state.autoRefresh = storageGet(STORAGE.autoRefresh) !== "off";
  renderAutoRefreshToggle();
  el("auto-refresh-toggle").addEventListener("click", toggleAutoRefresh);

  setUpDialog(el("confirm-dialog"));
  readUrl();
  await Promise.all([loadMe(), loadTaskTypes()]);
  historyDialog = new HistoryDialog({
    api,
    permissions: state.permissions,
    onError: (error) => toast(`Could not load the run history: ${error.message}`, "error"),
  });
  changesDialog = new ChangesDialog({
    api,
    onError: (error) => toast(`Could not load the changes: ${error.message}`, "error"),
  });
  setUpFilters();
  applyPermissions();
  taskForm = new TaskForm({
    api,
    taskTypes: state.taskTypes,
    loadTimezones,
    onSaved: () => refresh(),
    onOutdated: () => refresh(),
  });

  await refresh();
  document.body.dataset.ready = "true";
  startAutoRefresh();
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.autoRefresh && Date.now() - state.lastLoadedAt > AUTO_REFRESH_MS) refresh();
  });
}

start();
