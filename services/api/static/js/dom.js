// A tiny element builder: every piece of server data reaches the page as text, never as HTML.

const PROPERTIES_AFTER_CHILDREN = new Set(["value", "checked", "selected"]);

/**
 * Create an element. `props` are attributes, except: `class`, `dataset`, `onX` listeners, and `value` /
 * `checked` / `selected`, which are set as properties once the children (e.g. a select's options) exist.
 * Children may be strings, nodes, arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  const late = [];
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function")
      el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (PROPERTIES_AFTER_CHILDREN.has(key)) late.push([key, value]);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  for (const [key, value] of late) el[key] = value;
  return el;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : String(child));
  }
  return parent;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)];
}

/** Call `fn` once `delayMs` have passed without another call. */
export function debounce(fn, delayMs) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), delayMs);
  };
}

/**
 * The control that stands where `stale` stood before its table row was re-rendered (the lists reload every
 * 20 s): the same data-testid in the row of the same task. `stale` itself while it is still on the page;
 * null when that row or control is gone.
 */
export function sameControlNow(stale) {
  if (!stale || stale.isConnected) return stale;
  const row = stale.closest("tr");
  const testId = stale.dataset?.testid;
  const taskId = row?.dataset.taskId ?? row?.dataset.systemTaskId;
  if (!testId || taskId === undefined) return null;
  const rowKey = row.dataset.taskId !== undefined ? "data-task-id" : "data-system-task-id";
  return document.querySelector(`tr[${rowKey}="${CSS.escape(taskId)}"] [data-testid="${CSS.escape(testId)}"]`);
}
