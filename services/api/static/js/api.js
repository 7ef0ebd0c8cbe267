// The page's only door to the server: the REST API under /api/scheduler.

/** A non-2xx answer (or no answer). `fieldErrors` maps a field name to its reasons, for 422s. */
export class ApiError extends Error {
  constructor(status, body) {
    super(describeFailure(status, body));
    this.name = "ApiError";
    this.status = status;
    this.body = body;
    this.fieldErrors = body?.errors?.json ?? body?.errors?.query ?? {};
  }
}

function describeFailure(status, body) {
  if (status === 0) return "The scheduler API cannot be reached. Check your connection and try again.";
  if (status === 401) return "You are not signed in (the API answered 401). Sign in again and reload the page.";
  // The server's words name the action, the role it needs and the caller's role.
  if (status === 403) return body?.message || "You are not allowed to do this.";
  if (status === 404) return body?.message || "It no longer exists: someone may have deleted it.";
  if (status === 412) return "This task was changed by someone else since you opened it.";
  if (status === 422) return body?.message || "Some fields are not valid.";
  if (status >= 500) return `The server failed (${status}). Try again in a moment.`;
  return body?.message || `The request failed (${status}).`;
}

/** The `X-Pagination` header as {total, totalPages, page}; falls back to the body's length without it. */
function parsePagination(header, items) {
  if (header) {
    try {
      const raw = JSON.parse(header);
      return {
        total: raw.total ?? 0,
        totalPages: raw.total_pages ?? 0,
        page: raw.page ?? 1,
        totalIsEstimate: raw.total_is_estimate === true,
      };
    } catch {
      /* a malformed header reads as "no header" */
    }
  }
  const total = Array.isArray(items) ? items.length : 0;
  return { total, totalPages: total ? 1 : 0, page: 1, totalIsEstimate: false };
}

/**
 * The task's ETag as the API writes it ("<id>-<version>", quotes included): what If-Match sends back so that an
 * edit or delete applies only to the task as the page last read it (a 412 otherwise).
 */
export function etagOf(task) {
  return `"${task.id}-${task.version}"`;
}

async function request(method, path, { query, body, headers } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    // An array is a parameter given once per item (label=team=billing&label=tier=1).
    for (const item of [value].flat()) {
      if (item !== undefined && item !== null && item !== "") url.searchParams.append(key, String(item));
    }
  }
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null);
  }
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text.slice(0, 200) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, pagination: parsePagination(response.headers.get("X-Pagination"), data) };
}

const BASE = "/api/scheduler";

/** The list's filters as query parameters: the task list, Pause matching and Resume matching take the same. */
function taskFilters({ enabled, taskType, q, owner, labels }) {
  return { enabled, taskType, q, owner, label: labels ?? [] };
}

export const api = {
  listTasks: ({ page, pageSize, ...filters }) =>
    request("GET", `${BASE}/tasks`, { query: { page, page_size: pageSize, ...taskFilters(filters) } }),
  /** Pause (disable) every task the filters select; resolves to the ids it changed. */
  pauseTasks: (filters) =>
    request("POST", `${BASE}/tasks/pause`, { query: taskFilters(filters) }).then((r) => r.data.changed),
  /** Resume (enable) every task the filters select; resolves to the ids it changed. */
  resumeTasks: (filters) =>
    request("POST", `${BASE}/tasks/resume`, { query: taskFilters(filters) }).then((r) => r.data.changed),
  /** One task with everything the editor needs: the list's tasks carry no `config`, only its `configSummary`. */
  getTask: (id) => request("GET", `${BASE}/tasks/${id}`).then((r) => r.data),
  createTask: (task) => request("POST", `${BASE}/tasks`, { body: task }).then((r) => r.data),
  /** A partial update of `task` as the page read it (its ETag in If-Match): a 412 when it changed since. */
  updateTask: (task, changes) =>
    request("PUT", `${BASE}/tasks/${task.id}`, { body: changes, headers: { "If-Match": etagOf(task) } }).then(
      (r) => r.data,
    ),
  /** Delete `task` as the page read it (its ETag in If-Match): a 412 when it changed since. */
  deleteTask: (task) => request("DELETE", `${BASE}/tasks/${task.id}`, { headers: { "If-Match": etagOf(task) } }),
  runTask: (id) => request("POST", `${BASE}/tasks/${id}/run`).then((r) => r.data),
  /** Queue a run for each slot in [from, to] (ISO UTC) that has none; resolves to {slots, queued, alreadyRun, runs}. */
  backfillTask: (id, { from, to }) =>
    request("POST", `${BASE}/tasks/${id}/backfill`, { body: { from, to } }).then((r) => r.data),
  /**
   * Runs newest first: one task's (`scheduleId`, `systemTask`) or everyone's. `status` narrows it to one outcome
   * (success, missed...), `from`/`to` (ISO UTC, both included) to when an entry was queued; `includeSystem` false
   * leaves out the system tasks' runs.
   */
  listHistory: ({ scheduleId, systemTask, status, from, to, includeSystem, page, pageSize }) =>
    request("GET", `${BASE}/history`, {
      query: { scheduleId, systemTask, status, from, to, includeSystem, page, page_size: pageSize },
    }),
  /** Who changed what and when (the audit trail), newest first; `scheduleId` narrows it to one task. */
  listAudit: ({ scheduleId, page, pageSize }) =>
    request("GET", `${BASE}/audit`, { query: { scheduleId, page, page_size: pageSize } }),
  listSystemTasks: () => request("GET", `${BASE}/system-tasks`).then((r) => r.data),
  listTaskTypes: () => request("GET", `${BASE}/task-types`).then((r) => r.data),
  /** The caller: {email, authMode, role, permissions}. */
  whoAmI: () => request("GET", `${BASE}/me`).then((r) => r.data),
  listTimezones: () => request("GET", `${BASE}/timezones`).then((r) => r.data),
  /**
   * A cron expression's words and next runs within the bounds, by the DST policy; `startsAt` gives each run's
   * start with its jitter (null for jitter without the `taskId` whose offsets they are).
   */
  previewCron: ({
    expression,
    timezone,
    count = 5,
    startAt = null,
    endAt = null,
    dstPolicy = "once",
    jitterS = 0,
    taskId = null,
  }) =>
    request("GET", `${BASE}/cron/preview`, {
      query: { expression, timezone, count, startAt, endAt, dstPolicy, jitterS, taskId },
    }).then((r) => r.data),
};
