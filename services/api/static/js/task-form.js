// The Add / Edit task dialog. On a rejected save the dialog stays open with everything as typed and each
// server reason shown beside its field. An edit sends only the fields the user changed (the API's PUT is a
// partial update), so a field nobody touched is never rewritten, and the schedule is re-armed only when its
// timing really changed. A secret config field nobody replaced goes back as the API showed it, which keeps it.
// The policies (missed slots, overlap, jitter, DST) are fields like the others: sent on an edit only when changed.

import { ConfigFields } from "./config-fields.js";
import { CronField } from "./cron-field.js";
import { openDialog, setUpDialog } from "./dialog.js";
import { $, $$, h } from "./dom.js";
import { formatDuration, INTERVAL_UNITS, splitInterval, viewerTimeZone } from "./format.js";
import { labelLines, parseLabelLines } from "./labels.js";
import { toast } from "./toast.js";

const MAX_NAME_LENGTH = 100;
const TIMING_FIELD_OF_TYPE = { cron: "cronExpression", interval: "intervalMs" };
const MAX_ATTEMPTS = 10; // services/api/schemas.py documents the bounds; the server has the last word
const MAX_RETRY_DELAY_S = 3600;
// The per-schedule run settings, owner, labels and bounds: null (or no labels) means the task type's or
// deployment's, or no bound.
const ADVANCED_FIELDS = ["maxAttempts", "retryBaseDelayMs", "timeLimitS", "owner", "labels", "startAt", "endAt"];
// What a schedule does with missed and overlapping slots, when its runs start, and (cron) the repeated hour of a
// fall-back night; each with the API's default. services/api/schemas.py documents the bounds.
const POLICY_DEFAULTS = {
  misfirePolicy: "coalesce",
  catchUpMax: null,
  catchUpWindowS: null,
  overlapPolicy: "allow",
  jitterS: 0,
  dstPolicy: "once",
};
const POLICY_FIELDS = Object.keys(POLICY_DEFAULTS);
const MAX_CATCH_UP = 1000;
const MAX_CATCH_UP_WINDOW_S = 31_622_400; // 366 days
const MAX_JITTER_S = 300;
/** What each choice does, shown under its select as it is chosen. */
const POLICY_HINTS = {
  misfirePolicy: {
    coalesce:
      "Slots that passed unrun (workers down, the task disabled) run once, as one run of the latest; the others are recorded as missed.",
    skip: "Slots that passed unrun are not run (unless the latest is only just late, within the deployment's grace); they are recorded as missed.",
    catchUp:
      "Slots that passed unrun within the window run one by one, oldest first, up to the cap; every other one is recorded as missed.",
  },
  overlapPolicy: {
    allow: "A slot runs even while the previous scheduled run is still queued or running.",
    skip: "A slot that comes due while the previous scheduled run is still queued or running is recorded as skipped. Run now is never skipped.",
  },
  dstPolicy: {
    once: "On the night clocks go back, a time in the repeated hour (e.g. 01:30) runs once, the first time it comes.",
    both: "On the night clocks go back, a time in the repeated hour (e.g. 01:30) runs each time it comes: twice.",
  },
};
const CONTROLS = "input:not([type=radio]), select, textarea";

/** Equal as JSON values, whatever the order of object keys (a config sent back in another order is the same). */
function sameValue(a, b) {
  return canonicalJson(a) === canonicalJson(b);
}

function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

/**
 * Parameters:
 *   api: the REST client (createTask, updateTask, getTask).
 *   taskTypes: the array from /api/scheduler/task-types.
 *   loadTimezones(): resolves to the IANA names for the picker (fetched once, on first open).
 *   onSaved(task, { created }): after a successful save.
 *   onOutdated(): the task proved changed (or deleted) behind the page's back, and the form reloaded it.
 *
 * An edit applies only to the task as the form read it (the API's If-Match): when someone else saved it since,
 * the save is refused (412) and the form offers to reload the task, discarding what was typed.
 */
export class TaskForm {
  constructor({ api, taskTypes, loadTimezones, onSaved, onOutdated }) {
    this.api = api;
    this.taskTypes = taskTypes;
    this.loadTimezones = loadTimezones;
    this.onSaved = onSaved;
    this.onOutdated = onOutdated;
    this.editing = null;
    this.opened = null; // the form's values as the dialog opened: a field still equal to its value here is unchanged
    this.saving = false;

    this.dialog = document.getElementById("task-dialog");
    this.form = document.getElementById("task-form");
    this.title = document.getElementById("task-dialog-title");
    this.banner = document.getElementById("task-form-error");
    this.saveButton = document.getElementById("task-save");
    this.nameInput = document.getElementById("task-name");
    this.typeSelect = document.getElementById("task-type");
    this.typeDescription = document.getElementById("task-type-description");
    this.cronInput = document.getElementById("cron-expression");
    this.timezoneInput = document.getElementById("task-timezone");
    this.intervalValue = document.getElementById("interval-value");
    this.intervalUnit = document.getElementById("interval-unit");
    this.intervalHint = document.getElementById("interval-hint");
    this.configContainer = document.getElementById("config-fields");
    this.configFieldset = document.getElementById("config-fieldset");
    this.enabledField = document.getElementById("enabled-field");
    this.enabledInput = document.getElementById("task-enabled");
    this.advanced = document.getElementById("advanced-settings");
    this.maxAttemptsInput = document.getElementById("task-max-attempts");
    this.retryDelayInput = document.getElementById("task-retry-delay");
    this.timeLimitInput = document.getElementById("task-time-limit");
    this.ownerInput = document.getElementById("task-owner");
    this.labelsInput = document.getElementById("task-labels");
    // Start and end are typed in the viewer's time zone, as every time on the page is shown; the API gets UTC.
    this.startInput = document.getElementById("task-start-at");
    this.endInput = document.getElementById("task-end-at");
    this.misfireSelect = document.getElementById("task-misfire-policy");
    this.catchUpFields = document.getElementById("catch-up-fields");
    this.catchUpMaxInput = document.getElementById("task-catch-up-max");
    this.catchUpWindowInput = document.getElementById("task-catch-up-window");
    this.catchUpWindowHint = document.getElementById("task-catch-up-window-hint");
    this.overlapSelect = document.getElementById("task-overlap-policy");
    this.jitterInput = document.getElementById("task-jitter");
    this.dstSelect = document.getElementById("task-dst-policy");
    document.getElementById("task-bounds-zone").textContent =
      `Start and end are in your time zone (${viewerTimeZone}); empty: no bound.`;
    this.configFields = new ConfigFields({
      container: this.configContainer,
      fieldset: this.configFieldset,
      onInvalid: (field, reason) => (reason ? this.showFieldError(field, [reason]) : this.clearFieldError(field)),
    });

    this.intervalUnit.replaceChildren(
      ...INTERVAL_UNITS.map((unit) => h("option", { value: String(unit.ms) }, unit.label)),
    );
    this.typeSelect.replaceChildren(
      h("option", { value: "", disabled: true }, "Choose what the task does…"),
      ...taskTypes.map((type) => h("option", { value: type.id }, type.label)),
    );

    this.cronField = new CronField({
      input: this.cronInput,
      timezoneInput: this.timezoneInput,
      presetsEl: document.getElementById("cron-presets"),
      previewEl: document.getElementById("cron-preview"),
      onChange: () => {
        this.clearFieldError("cronExpression");
        this.updateSaveButton();
      },
      onTimezoneError: (message) =>
        message ? this.showFieldError("timezone", [message]) : this.clearFieldError("timezone"),
      optionInputs: [this.startInput, this.endInput, this.dstSelect, this.jitterInput],
      readOptions: () => ({
        startAt: instantOrNull(this.startInput),
        endAt: instantOrNull(this.endInput),
        dstPolicy: this.dstSelect.value,
        jitterS: previewJitter(this.jitterInput),
        taskId: this.editing?.id ?? null,
      }),
    });

    // A typed secret lives only in its input while the dialog is open.
    setUpDialog(this.dialog, { onClose: () => this.configFields.forget() });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.typeSelect.addEventListener("change", () => {
      this.configFields.remember();
      this.renderTaskType();
    });
    for (const radio of this.scheduleRadios) radio.addEventListener("change", () => this.renderScheduleType());
    this.intervalValue.addEventListener("input", () => this.renderIntervalHint());
    this.intervalUnit.addEventListener("change", () => this.renderIntervalHint());
    for (const select of [this.misfireSelect, this.overlapSelect, this.dstSelect]) {
      select.addEventListener("change", () => this.renderPolicies());
    }
    this.catchUpWindowInput.addEventListener("input", () => this.renderPolicies());
    // Typing in a field clears the reason the server gave for it.
    this.form.addEventListener("input", (event) => {
      const field = event.target.closest("[data-field]");
      if (field) this.clearFieldError(field.dataset.field);
    });
  }

  get scheduleRadios() {
    return $$('input[name="scheduleType"]', this.form);
  }

  get scheduleType() {
    return this.scheduleRadios.find((radio) => radio.checked)?.value ?? "cron";
  }

  set scheduleType(value) {
    for (const radio of this.scheduleRadios) radio.checked = radio.value === value;
  }

  selectedTaskType() {
    return this.taskTypes.find((type) => type.id === this.typeSelect.value) ?? null;
  }

  openForCreate() {
    this.editing = null;
    this.title.textContent = "Add task";
    this.saveButton.textContent = "Create task";
    this.enabledField.hidden = true;
    this.fill({
      name: "",
      taskType: this.taskTypes[0]?.id ?? "",
      scheduleType: "cron",
      cronExpression: "0 9 * * 1-5",
      intervalMs: 15 * 60_000,
      timezone: viewerTimeZone,
      config: {},
      enabled: true,
      labels: {},
      ...POLICY_DEFAULTS,
    });
    openDialog(this.dialog, this.nameInput);
    this.populateTimezones();
  }

  openForEdit(task) {
    this.showTask(task);
    openDialog(this.dialog, this.nameInput);
    this.populateTimezones();
  }

  /** Fill the form with `task` as read: what an edit is compared with, and the version (ETag) it applies to. */
  showTask(task) {
    this.editing = task;
    this.title.textContent = `Edit “${task.name}”`;
    this.saveButton.textContent = "Save changes";
    this.enabledField.hidden = false;
    this.fill({
      ...task,
      cronExpression: task.cronExpression ?? "0 9 * * 1-5",
      intervalMs: task.intervalMs ?? 15 * 60_000,
      timezone: task.timezone || "UTC",
    });
  }

  /** Read the task again, as the server holds it now, into the form: what was typed here is discarded. */
  async reload(button) {
    const { id, name } = this.editing;
    button.disabled = true;
    let task;
    try {
      task = await this.api.getTask(id);
    } catch (error) {
      button.disabled = false;
      this.showBanner([`Could not reload “${name}”: ${error.message}`]);
      toast(`Could not reload “${name}”: ${error.message}`, "error");
      if (error.status === 404) this.onOutdated?.();
      return;
    }
    this.configFields.forget();
    this.showTask(task);
    this.updateSaveButton();
    toast(`Reloaded “${task.name}” as it is now. Make your changes again and save.`, "info");
    this.nameInput.focus();
    this.onOutdated?.();
  }

  async populateTimezones() {
    const datalist = document.getElementById("timezone-options");
    if (datalist.childElementCount) return;
    try {
      const zones = await this.loadTimezones();
      datalist.replaceChildren(...zones.map((zone) => h("option", { value: zone })));
    } catch (error) {
      toast(`Could not load the time zone list: ${error.message}`, "error");
    }
  }

  fill(task) {
    this.clearAllErrors();
    this.saving = false;
    this.nameInput.value = task.name ?? "";
    this.typeSelect.value = task.taskType ?? "";
    this.configFields.load(this.selectedTaskType()?.configFields ?? [], task.config);
    this.fillAdvanced(task);
    this.scheduleType = task.scheduleType ?? "cron";
    this.cronInput.value = task.cronExpression ?? "";
    this.timezoneInput.value = task.timezone ?? "UTC";
    const { value, unitMs } = splitInterval(task.intervalMs);
    this.intervalValue.value = String(value);
    this.intervalUnit.value = String(unitMs);
    this.enabledInput.checked = task.enabled !== false;
    this.renderTaskType();
    this.renderScheduleType();
    this.renderIntervalHint();
    this.renderPolicies();
    this.opened = this.formValues();
  }

  renderScheduleType() {
    const type = this.scheduleType;
    for (const panel of $$("[data-panel]", this.form)) panel.hidden = panel.dataset.panel !== type;
    if (type === "cron") this.cronField.reset();
    this.updateSaveButton();
  }

  renderIntervalHint() {
    this.intervalHint.textContent = this.intervalHintText(this.intervalMs());
  }

  /** The stored interval in the server's words; any other value as its exact milliseconds (never re-described). */
  intervalHintText(intervalMs) {
    if (!intervalMs) return "Enter a number greater than zero.";
    const stored = this.editing?.scheduleType === "interval" ? this.editing : null;
    if (intervalMs === stored?.intervalMs) return `${stored.description}, as saved.`;
    return `${intervalMs.toLocaleString("en-GB")} ms between runs, counted from when you save.`;
  }

  intervalMs() {
    const value = Number(this.intervalValue.value);
    if (!this.intervalValue.value || !Number.isFinite(value) || value <= 0) return null;
    return Math.round(value * Number(this.intervalUnit.value));
  }

  /**
   * The run settings, policies, owner and labels; the section starts open when the schedule sets any of them (a
   * policy: to other than its default).
   */
  fillAdvanced(task) {
    const isSet = (value) => value !== null && value !== undefined && value !== "";
    const text = (value) => (isSet(value) ? String(value) : "");
    this.maxAttemptsInput.value = text(task.maxAttempts);
    this.retryDelayInput.value = isSet(task.retryBaseDelayMs) ? String(task.retryBaseDelayMs / 1000) : "";
    this.timeLimitInput.value = text(task.timeLimitS);
    this.ownerInput.value = text(task.owner);
    this.labelsInput.value = labelLines(task.labels);
    this.startInput.value = localInputValue(task.startAt);
    this.endInput.value = localInputValue(task.endAt);
    this.misfireSelect.value = task.misfirePolicy ?? POLICY_DEFAULTS.misfirePolicy;
    this.catchUpMaxInput.value = text(task.catchUpMax);
    this.catchUpWindowInput.value = text(task.catchUpWindowS);
    this.overlapSelect.value = task.overlapPolicy ?? POLICY_DEFAULTS.overlapPolicy;
    this.jitterInput.value = text(task.jitterS ?? POLICY_DEFAULTS.jitterS);
    this.dstSelect.value = task.dstPolicy ?? POLICY_DEFAULTS.dstPolicy;
    const policySet = ["misfirePolicy", "overlapPolicy", "jitterS"].some(
      (field) => isSet(task[field]) && task[field] !== POLICY_DEFAULTS[field],
    );
    this.advanced.open =
      policySet ||
      ADVANCED_FIELDS.some((field) =>
        field === "labels" ? Object.keys(task.labels ?? {}).length > 0 : isSet(task[field]),
      );
  }

  /** The catch-up cap and window only for Catch up; each select's words for its choice. */
  renderPolicies() {
    const catchingUp = this.misfireSelect.value === "catchUp";
    this.catchUpFields.hidden = !catchingUp;
    if (!catchingUp) {
      this.clearFieldError("catchUpMax");
      this.clearFieldError("catchUpWindowS");
    }
    for (const [field, select] of [
      ["misfirePolicy", this.misfireSelect],
      ["overlapPolicy", this.overlapSelect],
      ["dstPolicy", this.dstSelect],
    ]) {
      document.getElementById(`${select.id}-hint`).textContent = POLICY_HINTS[field][select.value] ?? "";
    }
    const windowS = numberOrNull(this.catchUpWindowInput);
    const spelled =
      windowS !== null && Number.isInteger(windowS) && windowS >= 60 ? ` (${formatDuration(windowS * 1000)})` : "";
    this.catchUpWindowHint.textContent =
      windowS === null
        ? "Only missed slots at most this many seconds old run: 3600 is an hour, 86400 a day."
        : `Only missed slots at most ${windowS.toLocaleString("en-GB")} s old${spelled} run.`;
  }

  renderTaskType() {
    const taskType = this.selectedTaskType();
    this.typeDescription.textContent = taskType?.description ?? "";
    this.configFields.render(taskType?.configFields ?? []);
    // An empty field means the default: say which.
    this.maxAttemptsInput.placeholder = taskType ? `Default: ${taskType.maxAttempts}` : "";
    this.retryDelayInput.placeholder = "Default: the deployment's";
    this.timeLimitInput.placeholder = taskType?.timeLimitS
      ? `Default: ${taskType.timeLimitS}`
      : "Default: the deployment's limit";
  }

  /** Every field as the form holds it now, in the API's terms (an unreadable value as typed). */
  formValues() {
    return {
      name: this.nameInput.value.trim(),
      taskType: this.typeSelect.value,
      scheduleType: this.scheduleType,
      cronExpression: this.cronInput.value.trim(),
      intervalMs: this.intervalMs(),
      timezone: this.timezoneInput.value.trim() || "UTC",
      config: this.configFields.read(this.selectedTaskType()?.configFields ?? []).config,
      enabled: this.enabledInput.checked,
      maxAttempts: numberOrNull(this.maxAttemptsInput),
      retryBaseDelayMs: secondsAsMs(numberOrNull(this.retryDelayInput)),
      timeLimitS: numberOrNull(this.timeLimitInput),
      owner: this.ownerInput.value.trim() || null,
      labels: parseLabelLines(this.labelsInput.value).labels,
      startAt: instantOrNull(this.startInput),
      endAt: instantOrNull(this.endInput),
      ...this.policyValues(),
    };
  }

  /** The policies as the API takes them: the catch-up cap and window null unless catching up; empty jitter 0. */
  policyValues() {
    const misfirePolicy = this.misfireSelect.value;
    const catchingUp = misfirePolicy === "catchUp";
    return {
      misfirePolicy,
      catchUpMax: catchingUp ? numberOrNull(this.catchUpMaxInput) : null,
      catchUpWindowS: catchingUp ? numberOrNull(this.catchUpWindowInput) : null,
      overlapPolicy: this.overlapSelect.value,
      jitterS: numberOrNull(this.jitterInput) ?? 0,
      dstPolicy: this.dstSelect.value,
    };
  }

  /** A new task: every field of its schedule type (the API rejects a field of another type, so it is null). */
  createPayload(values) {
    const payload = { ...values };
    for (const [type, field] of Object.entries(TIMING_FIELD_OF_TYPE)) {
      if (type !== values.scheduleType) payload[field] = null;
    }
    return payload;
  }

  /**
   * An edit: only what the user changed since the dialog opened. Switching schedule type sends the new type's
   * timing field too (the server drops the old one); a new task type sends its config.
   */
  changedFields(values) {
    const changed = {};
    const differs = (field) => !sameValue(values[field], this.opened[field]);
    for (const field of [
      "name",
      "taskType",
      "scheduleType",
      "timezone",
      "enabled",
      ...ADVANCED_FIELDS,
      ...POLICY_FIELDS,
    ]) {
      if (differs(field)) changed[field] = values[field];
    }
    if (differs("taskType") || differs("config")) changed.config = values.config;
    const timingField = TIMING_FIELD_OF_TYPE[values.scheduleType];
    if (timingField && (differs("scheduleType") || differs(timingField))) changed[timingField] = values[timingField];
    return changed;
  }

  /** The checks the browser can make alone; the server still has the last word. */
  localErrors(values) {
    const errors = {};
    if (!values.name) errors.name = ["Give the task a name."];
    else if (values.name.length > MAX_NAME_LENGTH) errors.name = [`At most ${MAX_NAME_LENGTH} characters.`];
    if (!values.taskType) errors.taskType = ["Choose a task type."];
    if (values.scheduleType === "interval" && !values.intervalMs)
      errors.intervalMs = ["Enter a number greater than zero."];
    Object.assign(errors, this.configFields.read(this.selectedTaskType()?.configFields ?? []).errors);
    const outOfRange = (input, value, { min, max, whole }) =>
      input.validity.badInput ||
      (value !== null && (value < min || (max !== undefined && value > max) || (whole && !Number.isInteger(value))));
    if (outOfRange(this.maxAttemptsInput, values.maxAttempts, { min: 1, max: MAX_ATTEMPTS, whole: true }))
      errors.maxAttempts = [`A whole number from 1 to ${MAX_ATTEMPTS}, or empty for the default.`];
    if (outOfRange(this.retryDelayInput, values.retryBaseDelayMs, { min: 0, max: MAX_RETRY_DELAY_S * 1000 }))
      errors.retryBaseDelayMs = [`Seconds from 0 to ${MAX_RETRY_DELAY_S}, or empty for the default.`];
    if (outOfRange(this.timeLimitInput, values.timeLimitS, { min: 1, whole: true }))
      errors.timeLimitS = ["Whole seconds, at least 1, or empty for the default."];
    // A missing cap or window is the server's to name (it says why it is required); out of range, the page's.
    if (values.misfirePolicy === "catchUp") {
      if (outOfRange(this.catchUpMaxInput, values.catchUpMax, { min: 1, max: MAX_CATCH_UP, whole: true }))
        errors.catchUpMax = [`A whole number from 1 to ${MAX_CATCH_UP}.`];
      const windowBounds = { min: 1, max: MAX_CATCH_UP_WINDOW_S, whole: true };
      if (outOfRange(this.catchUpWindowInput, values.catchUpWindowS, windowBounds))
        errors.catchUpWindowS = [
          `Whole seconds from 1 to ${MAX_CATCH_UP_WINDOW_S.toLocaleString("en-GB")} (366 days).`,
        ];
    }
    if (outOfRange(this.jitterInput, values.jitterS, { min: 0, max: MAX_JITTER_S, whole: true }))
      errors.jitterS = [`Whole seconds from 0 to ${MAX_JITTER_S}; empty for none.`];
    const labelErrors = parseLabelLines(this.labelsInput.value).errors;
    if (labelErrors.length) errors.labels = labelErrors;
    for (const [field, input] of [
      ["startAt", this.startInput],
      ["endAt", this.endInput],
    ]) {
      if (input.validity.badInput) errors[field] = ["Enter a whole date and time, or leave it empty for no bound."];
    }
    if (
      !errors.startAt &&
      !errors.endAt &&
      values.startAt &&
      values.endAt &&
      new Date(values.endAt) <= new Date(values.startAt)
    )
      errors.endAt = ["The end must be after the start."];
    return errors;
  }

  updateSaveButton() {
    const cronBlocked = this.scheduleType === "cron" && !this.cronField.isValid;
    this.saveButton.disabled = this.saving || cronBlocked;
    this.saveButton.title = cronBlocked ? "Fix the cron expression first" : "";
  }

  async save() {
    if (this.saving) return;
    this.clearAllErrors();
    const values = this.formValues();
    const local = this.localErrors(values);
    if (Object.keys(local).length) {
      this.showErrors(local, "Some fields need your attention.");
      return;
    }
    const payload = this.editing ? this.changedFields(values) : this.createPayload(values);
    if (this.editing && !Object.keys(payload).length) {
      this.dialog.close();
      toast(`Nothing changed: “${this.editing.name}” is as it was.`, "info");
      return;
    }
    this.saving = true;
    const idleLabel = this.saveButton.textContent;
    this.saveButton.textContent = "Saving…";
    this.updateSaveButton();
    try {
      const saved = this.editing
        ? await this.api.updateTask(this.editing, payload)
        : await this.api.createTask(payload);
      const created = !this.editing;
      this.configFields.forget(); // now, not when the close event comes: a typed secret leaves with the save
      this.dialog.close();
      toast(created ? `Created “${saved.name}”.` : `Saved “${saved.name}”.`, "success");
      this.onSaved(saved, { created });
    } catch (error) {
      this.reportSaveFailure(error);
    } finally {
      this.saving = false;
      this.saveButton.textContent = idleLabel;
      this.updateSaveButton();
    }
  }

  reportSaveFailure(error) {
    const verb = this.editing ? "save the changes" : "create the task";
    if (error.status === 412 && this.editing) {
      this.showConflict();
      toast(`Could not save “${this.editing.name}”: it was changed by someone else since you opened it.`, "error");
      return;
    }
    if (error.status === 422 && Object.keys(error.fieldErrors).length) {
      this.showErrors(
        error.fieldErrors,
        "The server did not accept the task. Fix the highlighted fields and save again; nothing you typed was lost.",
      );
      toast(`Could not ${verb}: fix the highlighted fields.`, "error");
      return;
    }
    this.showBanner([`Could not ${verb}: ${error.message}`]);
    toast(`Could not ${verb}: ${error.message}`, "error");
  }

  /**
   * Show `errors` ({field: [reasons]}, config nested or flat) beside their fields; a field with no place of its
   * own (labels.<key>, a config key the form does not draw) beside its parent, naming it; the rest in the banner.
   */
  showErrors(errors, summary) {
    const flat = [];
    for (const [field, reasons] of Object.entries(errors)) {
      if (field === "config" && reasons && !Array.isArray(reasons)) {
        for (const [key, keyReasons] of Object.entries(reasons)) flat.push([`config.${key}`, keyReasons]);
      } else {
        flat.push([field, reasons]);
      }
    }
    const byParent = new Map();
    const unplaced = [];
    for (const [field, reasons] of flat) {
      if (this.showFieldError(field, reasons)) continue;
      const [parent, ...rest] = field.split(".");
      const line = `${rest.length ? `${rest.join(".")}: ` : ""}${[reasons].flat().join(" ")}`;
      if (rest.length && this.hasErrorSlot(parent)) byParent.set(parent, [...(byParent.get(parent) ?? []), line]);
      else unplaced.push(`${field === "_schema" ? "" : `${field}: `}${[reasons].flat().join(" ")}`);
    }
    for (const [parent, lines] of byParent) this.showFieldError(parent, lines);
    this.showBanner([summary, ...unplaced]);
    const firstInvalid = $('[aria-invalid="true"]:not([hidden])', this.form);
    firstInvalid?.focus();
  }

  hasErrorSlot(field) {
    const slot = $(`[data-error-for="${CSS.escape(field)}"]`, this.form);
    return Boolean(slot) && !slot.closest("[hidden]");
  }

  /** Returns false when the form has no visible place for that field. */
  showFieldError(field, reasons) {
    if (!this.hasErrorSlot(field)) return false;
    const slot = $(`[data-error-for="${CSS.escape(field)}"]`, this.form);
    slot.textContent = [reasons].flat().join(" ");
    slot.classList.add("visible");
    const section = slot.closest("details");
    if (section) section.open = true; // a reason inside the closed Advanced section must be seen
    const container = slot.closest("[data-field]");
    const control = container && $(CONTROLS, container);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      slot.id ||= `${control.id}-error`;
      const described = (control.getAttribute("aria-describedby") ?? "").split(" ").filter(Boolean);
      if (!described.includes(slot.id)) control.setAttribute("aria-describedby", [...described, slot.id].join(" "));
    }
    return true;
  }

  clearFieldError(field) {
    const slot = $(`[data-error-for="${CSS.escape(field)}"]`, this.form);
    if (!slot?.classList.contains("visible")) return;
    slot.textContent = "";
    slot.classList.remove("visible");
    const control = $(CONTROLS, slot.closest("[data-field]"));
    if (control && control !== this.cronInput) control.removeAttribute("aria-invalid");
  }

  clearAllErrors() {
    for (const slot of $$(".field-error.visible", this.form)) this.clearFieldError(slot.dataset.errorFor);
    this.banner.hidden = true;
    this.banner.replaceChildren();
  }

  /** A save refused because someone else changed the task since the form read it; Reload reads it again. */
  showConflict() {
    const reload = h(
      "button",
      { type: "button", class: "btn btn-secondary btn-sm", "data-testid": "conflict-reload" },
      "Reload",
    );
    reload.addEventListener("click", () => this.reload(reload));
    this.banner.replaceChildren(
      h(
        "span",
        { "data-testid": "conflict-message" },
        h("strong", {}, "This task was changed by someone else since you opened it."),
        " Nothing was saved, so their change is kept. Reload to see the task as it is now (your changes here are discarded), then make yours again.",
      ),
      reload,
    );
    this.banner.hidden = false;
    reload.focus();
  }

  showBanner(lines) {
    const [first, ...rest] = lines.filter(Boolean);
    const details = rest.length
      ? [
          h(
            "ul",
            {},
            rest.map((line) => h("li", {}, line)),
          ),
        ]
      : [];
    this.banner.replaceChildren(h("strong", {}, first), ...details);
    this.banner.hidden = false;
  }
}

/** A number input's value, or null when it is empty (or holds what is not a number). */
function numberOrNull(input) {
  if (input.value.trim() === "") return null;
  const value = Number(input.value);
  return Number.isFinite(value) ? value : null;
}

/** The jitter the preview asks about: the typed whole seconds when the API would take them, else none. */
function previewJitter(input) {
  const value = numberOrNull(input);
  return value !== null && Number.isInteger(value) && value >= 0 && value <= MAX_JITTER_S ? value : 0;
}

function secondsAsMs(seconds) {
  return seconds === null ? null : Math.round(seconds * 1000);
}

/** A datetime-local input's value (the viewer's wall time) as the instant the API takes, or null when empty. */
function instantOrNull(input) {
  if (!input.value) return null;
  const date = new Date(input.value); // a date and time without an offset is local time
  return Number.isNaN(date.getTime()) ? input.value : date.toISOString();
}

/** An instant from the API as a datetime-local value in the viewer's zone; seconds only when it has any. */
function localInputValue(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (number, width = 2) => String(number).padStart(width, "0");
  const minutes = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  if (!date.getSeconds() && !date.getMilliseconds()) return minutes;
  const fraction = date.getMilliseconds() ? `.${pad(date.getMilliseconds(), 3)}` : "";
  return `${minutes}:${pad(date.getSeconds())}${fraction}`;
}
