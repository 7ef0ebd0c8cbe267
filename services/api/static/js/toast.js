// Short-lived notices in the corner: one for every action's success or failure.

import { h } from "./dom.js";
import { icon } from "./icons.js";

const DISMISS_AFTER_MS = { success: 5000, info: 5000, error: 9000 };

/** Show a toast. `kind` is "success", "error" or "info"; errors stay longer and are announced assertively. */
export function toast(message, kind = "success") {
  const container = document.getElementById("toasts");
  const close = h(
    "button",
    { type: "button", class: "toast-close", "aria-label": "Dismiss notification" },
    icon("close"),
  );
  const item = h(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null, "data-testid": `toast-${kind}` },
    h("span", { class: "toast-text" }, message),
    close,
  );
  const remove = () => {
    item.classList.add("leaving");
    setTimeout(() => item.remove(), 180);
  };
  close.addEventListener("click", remove);
  let timer = setTimeout(remove, DISMISS_AFTER_MS[kind] ?? 5000);
  // Hovering keeps the toast up so it can be read.
  item.addEventListener("mouseenter", () => clearTimeout(timer));
  item.addEventListener("mouseleave", () => {
    timer = setTimeout(remove, 2500);
  });
  container.append(item);
  raise(container);
  while (container.children.length > 5) container.firstElementChild.remove();
}

/** Keep the toasts above a dialog that has just opened (both live in the browser's top layer). */
export function raiseToasts() {
  const container = document.getElementById("toasts");
  if (container.childElementCount) raise(container);
}

/** Re-show the popover so it is the newest top-layer element, above any dialog opened since. */
function raise(container) {
  if (typeof container.showPopover !== "function") return;
  if (container.matches(":popover-open")) container.hidePopover();
  container.showPopover();
}
