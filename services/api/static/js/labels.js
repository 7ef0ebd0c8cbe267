// Labels: key=value text a schedule carries, to filter the list and pause or resume schedules together. The
// form writes them one a line, the filter bar comma-separated: both as `key=value`, the way the API's `label`
// parameter takes them.

/** "team=billing" as ["team", "billing"] (split at the first "="); null when it is not key=value with a key. */
export function splitLabel(text) {
  const at = text.indexOf("=");
  if (at < 0) return null;
  const key = text.slice(0, at).trim();
  return key ? [key, text.slice(at + 1).trim()] : null;
}

/** A schedule's labels as the form shows them: one key=value a line. */
export function labelLines(labels) {
  return Object.entries(labels ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .join("\n");
}

/** The form's labels text read back: {labels, errors}, errors in words (a line that is not key=value, a repeat). */
export function parseLabelLines(text) {
  const labels = {};
  const errors = [];
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    if (!line.trim()) return;
    const pair = splitLabel(line);
    if (!pair) {
      errors.push(`Line ${index + 1} (“${line.trim()}”) is not key=value.`);
      return;
    }
    const [key, value] = pair;
    if (key in labels) errors.push(`“${key}” is given twice.`);
    labels[key] = value;
  });
  return { labels, errors };
}

/** The filter bar's "team=billing, tier=1" as ["team=billing", "tier=1"]; null if a part is not key=value. */
export function parseLabelSelector(text) {
  const parts = text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);
  const pairs = parts.map(splitLabel);
  if (pairs.some((pair) => pair === null)) return null;
  return pairs.map(([key, value]) => `${key}=${value}`);
}
