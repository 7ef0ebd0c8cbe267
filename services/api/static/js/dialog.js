// Modal dialogs on the native <dialog> element: it makes the rest of the page inert (focus stays inside),
// closes on Esc, and we hand focus back to whatever opened it.

import { $, $$, sameControlNow } from "./dom.js";
import { icon } from "./icons.js";
import { raiseToasts } from "./toast.js";

/**
 * Prepare a <dialog> once: its [data-close] buttons close it, and `onClose` runs however it was closed
 * (button, Esc, or `dialog.close()`). With `closeOnBackdrop`, a click outside the panel closes it too.
 */
export function setUpDialog(dialog, { onClose, closeOnBackdrop = false } = {}) {
  for (const button of $$("[data-close]", dialog)) {
    if (button.classList.contains("btn-icon")) button.append(icon("close"));
    button.addEventListener("click", () => dialog.close());
  }
  if (closeOnBackdrop) {
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
  }
  dialog.addEventListener("close", () => {
    document.body.classList.toggle("has-modal", Boolean($("dialog[open]")));
    onClose?.();
    // The opener's row may have been re-rendered by a refresh while the dialog was open: use its successor.
    const opener = sameControlNow(dialog._opener);
    dialog._opener = null;
    opener?.focus();
  });
}

/** Open a prepared dialog modally, remembering the element that had focus. */
export function openDialog(dialog, focusTarget = null) {
  dialog._opener = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  dialog.showModal();
  document.body.classList.add("has-modal");
  raiseToasts();
  focusTarget?.focus();
}

/**
 * Ask a yes/no question in the confirmation dialog. Resolves to true only when the operator confirms;
 * the safe choice (Cancel) has focus first so a stray Enter never deletes anything. `danger` (the default)
 * colours the confirming button as destructive.
 */
export function confirmAction({ title, message, confirmLabel, danger = true }) {
  const dialog = document.getElementById("confirm-dialog");
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  document.getElementById("confirm-title").textContent = title;
  const messageEl = document.getElementById("confirm-message");
  messageEl.replaceChildren(...(Array.isArray(message) ? message : [message]));
  ok.textContent = confirmLabel;
  ok.classList.toggle("btn-danger", danger);
  ok.classList.toggle("btn-primary", !danger);
  return new Promise((resolve) => {
    let confirmed = false;
    const onOk = () => {
      confirmed = true;
      dialog.close();
    };
    const onCancel = () => dialog.close();
    ok.addEventListener("click", onOk);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener(
      "close",
      () => {
        ok.removeEventListener("click", onOk);
        cancel.removeEventListener("click", onCancel);
        resolve(confirmed);
      },
      { once: true },
    );
    openDialog(dialog, cancel);
  });
}
