// The cron expression input: seven presets and a live preview answered by the server
// (/api/scheduler/cron/preview), shown in the schedule's zone and in the viewer's own; a macro (@daily) is
// shown with the five fields it stands for, and the task's start and end, when set, bound the runs it lists. It
// follows the task's DST policy (a repeated hour run twice is listed twice, each with its zone's offset) and jitter
// (each run's start after its slot, when the server knows it: for a saved task).

import { api } from "./api.js";
import { debounce, h } from "./dom.js";
import { formatExact, formatInZone, formatSecondsInZone, viewerTimeZone, zoneAbbreviation } from "./format.js";

export const CRON_PRESETS = [
  { label: "Every minute", expression: "* * * * *" },
  { label: "Every 5 minutes", expression: "*/5 * * * *" },
  { label: "Every hour", expression: "0 * * * *" },
  { label: "Daily at 09:00", expression: "0 9 * * *" },
  { label: "Every Monday at 09:00", expression: "0 9 * * 1" },
  { label: "Weekdays at 09:00", expression: "0 9 * * 1-5" },
  { label: "Monthly on the 1st", expression: "0 9 1 * *" },
];

const PREVIEW_DELAY_MS = 250;

function sentence(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * Owns the cron input, its presets and its preview.
 *
 * Parameters:
 *   input, timezoneInput, presetsEl, previewEl: the elements it drives.
 *   onChange(state): called whenever `state` changes ("empty", "checking", "valid", "invalid").
 *   onTimezoneError(message | null): the server rejected (or accepted again) the time zone.
 *   optionInputs: inputs whose change asks for a new preview (the task's start, end, DST policy, jitter); default
 *     none.
 *   readOptions(): {startAt, endAt, dstPolicy, jitterS, taskId}: the bounds (instants or null), the DST policy, the
 *     jitter in seconds and the saved task's id (null for a new one: its jitter offsets are not known yet); any may
 *     be left out.
 */
export class CronField {
  constructor({
    input,
    timezoneInput,
    presetsEl,
    previewEl,
    onChange,
    onTimezoneError,
    optionInputs = [],
    readOptions = () => ({}),
  }) {
    this.input = input;
    this.timezoneInput = timezoneInput;
    this.previewEl = previewEl;
    this.onChange = onChange;
    this.onTimezoneError = onTimezoneError;
    this.readOptions = readOptions;
    this.state = "empty";
    this.requestSeq = 0;
    this.presetButtons = CRON_PRESETS.map((preset) =>
      h(
        "button",
        {
          type: "button",
          class: "preset",
          "aria-pressed": "false",
          "data-testid": "cron-preset",
          title: preset.expression,
          onclick: () => this.setExpression(preset.expression),
        },
        preset.label,
      ),
    );
    presetsEl.replaceChildren(...this.presetButtons);
    this.schedulePreview = debounce(() => this.preview(), PREVIEW_DELAY_MS);
    input.addEventListener("input", () => this.changed());
    timezoneInput.addEventListener("input", () => this.changed());
    for (const optionInput of optionInputs) optionInput.addEventListener("input", () => this.changed());
  }

  get isValid() {
    return this.state === "valid";
  }

  setExpression(expression) {
    this.input.value = expression;
    this.changed();
    this.preview();
  }

  /** Re-check now (the dialog opening, the schedule type switching back to Cron). */
  reset() {
    this.requestSeq += 1;
    this.changed();
    this.preview();
  }

  changed() {
    const expression = this.input.value.trim();
    for (const [index, button] of this.presetButtons.entries()) {
      button.setAttribute("aria-pressed", String(CRON_PRESETS[index].expression === expression));
    }
    this.setState(expression ? "checking" : "empty");
    this.previewEl.classList.add("is-stale");
    this.schedulePreview();
  }

  setState(state) {
    this.state = state;
    this.input.setAttribute("aria-invalid", String(state === "invalid"));
    this.previewEl.dataset.state = state;
    this.onChange?.(state);
  }

  async preview() {
    const expression = this.input.value.trim();
    const timezone = this.timezoneInput.value.trim() || "UTC";
    const seq = ++this.requestSeq;
    if (!expression) {
      this.previewEl.classList.remove("is-stale");
      this.previewEl.replaceChildren(
        h(
          "p",
          { class: "muted" },
          "Pick a preset or type five fields, e.g. ",
          h("code", {}, "30 6 * * 1-5"),
          " for 06:30 on weekdays, or a macro such as ",
          h("code", {}, "@daily"),
          ".",
        ),
      );
      this.setState("empty");
      return;
    }
    let result;
    const options = this.readOptions();
    try {
      result = await api.previewCron({ expression, timezone, ...options });
    } catch (error) {
      if (seq !== this.requestSeq) return;
      this.showFailure(error);
      return;
    }
    if (seq !== this.requestSeq) return; // a newer keystroke has already asked again
    this.onTimezoneError?.(null);
    this.previewEl.classList.remove("is-stale");
    if (!result.valid) {
      this.previewEl.replaceChildren(
        h(
          "p",
          { class: "preview-invalid", "data-testid": "cron-preview-error" },
          `✕ ${sentence(result.error ?? "Not a valid cron expression: check each of the five fields.")}`,
        ),
      );
      this.setState("invalid");
      return;
    }
    this.previewEl.replaceChildren(...this.renderRuns(result, expression, timezone, options.jitterS ?? 0));
    this.setState("valid");
  }

  showFailure(error) {
    this.previewEl.classList.remove("is-stale");
    const timezoneReasons = error.fieldErrors?.timezone;
    if (error.status === 422 && timezoneReasons) {
      const message = `Unknown time zone: ${timezoneReasons.join(" ")}`;
      this.onTimezoneError?.(message);
      this.previewEl.replaceChildren(h("p", { class: "preview-invalid" }, "✕ ", message));
      this.setState("invalid");
      return;
    }
    const reasons = Object.values(error.fieldErrors ?? {}).flat();
    this.previewEl.replaceChildren(
      h(
        "p",
        { class: "preview-invalid", "data-testid": "cron-preview-error" },
        "✕ ",
        reasons.length ? reasons.join(" ") : error.message,
      ),
    );
    this.setState("invalid");
  }

  renderRuns(result, expression, timezone, jitterS) {
    const written = expression.split(/\s+/).join(" ");
    const sameZone = timezone === viewerTimeZone;
    const head = sameZone
      ? [h("th", { scope: "col" }, `Next ${result.nextRuns.length} runs (${timezone}, your time zone)`)]
      : [
          h("th", { scope: "col" }, `Next ${result.nextRuns.length} runs in ${timezone}`),
          h("th", { scope: "col" }, `Your time (${viewerTimeZone})`),
        ];
    if (!result.nextRuns.length) {
      return [
        h(
          "p",
          { class: "preview-valid", "data-testid": "cron-description" },
          "✓ Runs: ",
          h("strong", {}, result.description),
        ),
        h("p", { class: "muted", "data-testid": "cron-no-runs" }, "No run falls between the start and the end."),
      ];
    }
    const rows = result.nextRuns.map((iso, index) =>
      h(
        "tr",
        { "data-testid": "cron-next-run", "data-slot": iso, title: formatExact(iso) },
        h("td", {}, wallTime(result.nextRuns, index, timezone), startNote(iso, result.startsAt?.[index], timezone)),
        sameZone ? null : h("td", {}, wallTime(result.nextRuns, index, viewerTimeZone)),
      ),
    );
    // Jitter on a task not saved yet: its offsets are fixed per task and slot, so not known before it has an id.
    const jitterNote =
      jitterS > 0 && !result.startsAt
        ? h(
            "p",
            { class: "muted small", "data-testid": "cron-jitter-note" },
            `Each run starts up to ${jitterS} s after each slot, by an offset fixed per task and slot (shown once the task is saved).`,
          )
        : null;
    return [
      h(
        "p",
        { class: "preview-valid", "data-testid": "cron-description" },
        "✓ Runs: ",
        h("strong", {}, result.description),
      ),
      result.expanded && result.expanded !== written
        ? h(
            "p",
            { class: "muted", "data-testid": "cron-expanded" },
            h("code", {}, written),
            " stands for ",
            h("code", {}, result.expanded),
          )
        : null,
      h("table", { class: "preview-runs" }, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows)),
      jitterNote,
    ].filter(Boolean); // replaceChildren would show a null as the text "null"
  }
}

/**
 * A run's wall time in `timeZone`; when another listed run reads the same (the hour a fall-back night repeats,
 * run twice by the DST policy "both"), with the zone's offset at that instant, which tells the two apart.
 */
function wallTime(runs, index, timeZone) {
  const text = formatInZone(runs[index], timeZone);
  const repeated = runs.some((other, at) => at !== index && formatInZone(other, timeZone) === text);
  return repeated ? `${text} ${zoneAbbreviation(timeZone, new Date(runs[index]))}` : text;
}

/** " → starts 09:00:37" when the run starts after its slot (jitter); nothing when it starts on it. */
function startNote(slot, startsAt, timeZone) {
  if (!startsAt || new Date(startsAt).getTime() === new Date(slot).getTime()) return null;
  return h(
    "span",
    {
      class: "preview-start",
      "data-testid": "cron-run-start",
      "data-starts-at": startsAt,
      title: formatExact(startsAt),
    },
    ` → starts ${formatSecondsInZone(startsAt, timeZone, slot)}`,
  );
}
