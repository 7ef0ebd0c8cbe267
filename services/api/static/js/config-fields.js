// A task type's config form, drawn from the configFields that GET /task-types lists for it: select, text,
// number, url, json (a textarea read as JSON) and secret fields. A secret field is write-only: the API shows a
// stored one as {"set": true} or as its reference ({"env": "NAME"}, {"file": "/path"}), and sending that back
// keeps it. So the form shows what is stored with a Replace button, and sends back what it read unless the
// operator typed a new value; a typed value lives only in its password input until the dialog closes.

import { $, $$, h } from "./dom.js";

/** How a stored secret reads: "set", "from env SIGNING_KEY", "from file /run/secrets/key". */
function secretText(shown) {
  if (shown?.env) return `from env ${shown.env}`;
  if (shown?.file) return `from file ${shown.file}`;
  return "set";
}

function isStoredSecret(value) {
  return Boolean(value) && typeof value === "object" && !Array.isArray(value);
}

/** The reason `text` does not read as JSON, or null. */
function jsonError(text) {
  try {
    JSON.parse(text);
    return null;
  } catch (error) {
    return `Not valid JSON: ${error.message}`;
  }
}

/** A JSON value as the textarea shows it. */
function jsonText(value) {
  if (value === undefined || value === null) return "";
  return JSON.stringify(value, null, 2);
}

/**
 * Parameters:
 *   container: the element the fields are drawn in.
 *   fieldset: the element hidden when the task type has no config.
 *   onInvalid(field, reason): a field was left holding something unreadable (reason null: it reads again).
 */
export class ConfigFields {
  constructor({ container, fieldset, onInvalid }) {
    this.container = container;
    this.fieldset = fieldset;
    this.onInvalid = onInvalid;
    this.forget();
  }

  /** Start from a schedule's config as the API shows it. `fields` are its task type's configFields. */
  load(fields, config) {
    this.forget();
    const types = new Map(fields.map((field) => [field.key, field]));
    for (const [key, value] of Object.entries(config ?? {})) {
      const field = types.get(key);
      if (field?.secret && isStoredSecret(value)) this.storedSecrets[key] = value;
      else if (field?.type === "json") this.typed[key] = jsonText(value);
      else this.typed[key] = value;
    }
  }

  /** Drop every value, typed secrets first among them (the dialog closed). */
  forget() {
    this.typed = {};
    this.storedSecrets = {};
    this.replacing = new Set();
    this.container.replaceChildren();
  }

  /** Keep what was typed, so switching task type back and forth (or redrawing a field) loses nothing. */
  remember() {
    for (const input of $$("[data-config-key]", this.container)) this.typed[input.dataset.configKey] = input.value;
  }

  render(fields) {
    this.fieldset.hidden = fields.length === 0;
    this.container.replaceChildren(...fields.map((field) => this.renderField(field)));
  }

  /**
   * The config in the API's terms, and the reasons (by "config.<key>") a value cannot be read. An unreadable
   * value is kept as typed, so the form still counts it as a change.
   */
  read(fields) {
    this.remember();
    const config = {};
    const errors = {};
    for (const field of fields) {
      const { value, error } = this.readField(field);
      if (value !== undefined) config[field.key] = value;
      if (error) errors[`config.${field.key}`] = [error];
      else if (field.required && value === undefined) errors[`config.${field.key}`] = [`${field.label} is required.`];
    }
    return { config, errors };
  }

  /** One field's value in the API's terms ({value: undefined} when it is not set), or why it cannot be read. */
  readField(field) {
    const raw = this.typed[field.key];
    const typed = raw === undefined || raw === null || String(raw).trim() === "" ? undefined : raw;
    if (field.secret) {
      const kept = this.storedSecrets[field.key];
      const isNewValue = typed !== undefined && (this.replacing.has(field.key) || !kept);
      return { value: isNewValue ? raw : kept };
    }
    if (typed === undefined) return { value: undefined };
    if (field.type === "number") return { value: Number(typed) };
    if (field.type !== "json") return { value: typed };
    const reason = jsonError(typed);
    return reason ? { value: typed, error: reason } : { value: JSON.parse(typed) };
  }

  renderField(field) {
    const id = `config-${field.key}`;
    const hintId = field.help ? `${id}-hint` : null;
    let control;
    if (field.secret && this.storedSecrets[field.key] && !this.replacing.has(field.key)) {
      control = this.storedSecretControl(field, id, hintId);
    } else if (field.secret) {
      control = this.secretInput(field, id, hintId);
    } else {
      control = this.valueControl(field, id, hintId);
    }
    return h(
      "div",
      { class: "field", "data-field": `config.${field.key}` },
      h(
        "label",
        { for: id },
        field.label,
        field.required
          ? h("span", { class: "required", "aria-hidden": "true" }, " *")
          : h("span", { class: "muted" }, " (optional)"),
        field.secret ? h("span", { class: "secret-tag" }, "secret") : null,
      ),
      control,
      field.help ? h("p", { class: "hint", id: hintId }, field.help) : null,
      h("p", { class: "field-error", "data-error-for": `config.${field.key}` }),
    );
  }

  valueControl(field, id, hintId) {
    const current = this.typed[field.key];
    const value = current === undefined || current === null ? "" : String(current);
    const common = {
      id,
      name: id,
      required: field.required,
      "aria-describedby": hintId,
      "data-config-key": field.key,
      "data-testid": `config-${field.key}`,
    };
    if (field.type === "select") {
      return h(
        "select",
        { ...common, value },
        h("option", { value: "", disabled: field.required }, field.required ? "Choose…" : "(none)"),
        ...(field.options ?? []).map((option) => h("option", { value: option.value }, option.label)),
      );
    }
    if (field.type === "json") {
      return h("textarea", {
        ...common,
        class: "mono",
        rows: 3,
        spellcheck: "false",
        placeholder: 'JSON, e.g. {"key": "value"} or [1, 2]',
        value,
        // Leaving the field says at once whether it reads as JSON (typing clears the reason again).
        onchange: (event) => {
          const text = event.target.value;
          this.onInvalid(`config.${field.key}`, text.trim() ? jsonError(text) : null);
        },
      });
    }
    return h("input", {
      ...common,
      type: { number: "number", url: "url" }[field.type] ?? "text",
      value,
      autocomplete: "off",
      placeholder: field.type === "url" ? "https://…" : null,
      step: field.type === "number" ? "any" : null,
      min: field.minimum ?? null,
      max: field.maximum ?? null,
    });
  }

  /** A new value for a secret field: never shown, never offered to the browser's password manager. */
  secretInput(field, id, hintId) {
    const input = h("input", {
      id,
      name: id,
      type: "password",
      autocomplete: "new-password",
      required: field.required && !this.storedSecrets[field.key],
      "aria-describedby": hintId,
      "data-config-key": field.key,
      "data-testid": `config-${field.key}`,
      placeholder: this.storedSecrets[field.key] ? "New value" : null,
      value: this.typed[field.key] ?? "",
    });
    if (!this.storedSecrets[field.key]) return input;
    const keep = h(
      "button",
      {
        type: "button",
        class: "btn btn-secondary btn-sm",
        "data-testid": `config-${field.key}-keep`,
        onclick: () => this.keepSecret(field),
      },
      "Keep current",
    );
    return h("div", { class: "secret-row" }, input, keep);
  }

  /** A stored secret: what it is ("set" or its reference), and a button to type a new one instead. */
  storedSecretControl(field, id, hintId) {
    return h(
      "div",
      { class: "secret-stored" },
      h(
        "span",
        { class: "secret-status", "data-testid": `config-${field.key}-status` },
        secretText(this.storedSecrets[field.key]),
      ),
      h(
        "button",
        {
          type: "button",
          id,
          class: "btn btn-secondary btn-sm",
          "aria-describedby": hintId,
          "data-testid": `config-${field.key}-replace`,
          onclick: () => this.replaceSecret(field),
        },
        "Replace",
      ),
    );
  }

  replaceSecret(field) {
    this.replacing.add(field.key);
    this.typed[field.key] = "";
    this.redraw(field);
  }

  keepSecret(field) {
    this.replacing.delete(field.key);
    delete this.typed[field.key];
    this.redraw(field);
  }

  redraw(field) {
    const old = $(`[data-field="config.${CSS.escape(field.key)}"]`, this.container);
    const fresh = this.renderField(field);
    old?.replaceWith(fresh);
    $$("input, button", fresh)[0]?.focus();
  }
}
