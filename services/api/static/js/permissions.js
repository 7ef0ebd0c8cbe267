// What the signed-in user may do, as GET /me lists it (`permissions`): a control for anything else stays on the
// page, marked unavailable, with the reason in its tooltip. The server refuses such a call anyway (403); this
// only spares the user pressing a button to find out.

// What each role may do beyond reading, in words: the tooltip of the role shown in the header.
const ROLE_HINTS = {
  viewer: "You can read tasks, their history and their changes, but not change or run them.",
  operator: "You can run, pause, resume and backfill tasks, but not create, edit or delete them.",
  admin: "You can do everything, including creating, editing and deleting tasks.",
  none: "You have no role, so you can neither read nor change anything. Ask an admin for one.",
};

function withArticle(word) {
  return `${/^[aeiou]/i.test(word) ? "an" : "a"} ${word}`;
}

export class Permissions {
  /** `me` as GET /me answers it (its `role` null: none); null when it could not be read (nothing is offered). */
  constructor(me) {
    this.known = me !== null;
    this.role = me?.role ?? null;
    this.granted = new Set(me?.permissions ?? []);
    this.roleNeeded = me?.roleNeeded ?? {}; // the least role of each permission, as the API grants them
  }

  can(permission) {
    return this.granted.has(permission);
  }

  /** Why the user may not do it, in words ("needs the operator role — you are a viewer"); null when they may. */
  whyNot(permission) {
    if (this.can(permission)) return null;
    const needed = `needs the ${this.roleNeeded[permission] ?? "right"} role`;
    if (!this.known) return `${needed} — your role could not be read`;
    return `${needed} — ${this.role ? `you are ${withArticle(this.role)}` : "you have no role"}`;
  }

  /** The role as the header shows it, and what it may do, in words. */
  get roleLabel() {
    return this.role ?? "no role";
  }

  get roleHint() {
    return ROLE_HINTS[this.role ?? "none"] ?? "";
  }
}

/**
 * Mark `button` unavailable when the user lacks `permission`: aria-disabled (it stays focusable, so a keyboard
 * user reaches it and its tooltip too), its title "<title>: <why not>", and a press does nothing.
 */
export function requirePermission(button, permission, permissions) {
  const reason = permissions.whyNot(permission);
  const title = button.dataset.title ?? button.title; // its own title, before any reason was added to it
  button.dataset.title = title;
  if (reason) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
  button.title = reason ? `${title ? `${title}: ` : ""}${reason}` : title;
  return button;
}

/** Install once on the page: a press on a control marked unavailable (`requirePermission`) reaches no handler. */
export function blockUnavailableControls(root = document) {
  root.addEventListener(
    "click",
    (event) => {
      if (event.target.closest?.('[aria-disabled="true"]')) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    { capture: true },
  );
}
