// How times, durations and intervals read on the page. All times are shown in the viewer's own zone.

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

export const viewerTimeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const shortFormat = new Intl.DateTimeFormat("en-GB", {
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});
const shortFormatWithYear = new Intl.DateTimeFormat("en-GB", {
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const secondsFormat = new Intl.DateTimeFormat("en-GB", {
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const secondsFormatWithYear = new Intl.DateTimeFormat("en-GB", {
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const exactFormat = new Intl.DateTimeFormat("en-GB", {
  weekday: "long",
  day: "numeric",
  month: "long",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
const clockFormat = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });

const zoneFormats = new Map();

function toDate(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "27 Nov 14:03" (with the year when it is not this year), in local time. */
export function formatShort(iso) {
  const date = toDate(iso);
  if (!date) return "";
  const format = date.getFullYear() === new Date().getFullYear() ? shortFormat : shortFormatWithYear;
  return format.format(date);
}

/** "27 Nov, 14:03:05" (with the year when it is not this year), in local time: the history's precision. */
export function formatSeconds(iso) {
  const date = toDate(iso);
  if (!date) return "";
  return (date.getFullYear() === new Date().getFullYear() ? secondsFormat : secondsFormatWithYear).format(date);
}

/** "Friday 27 November 2026 at 14:03:05 CET": the tooltip text behind every shown time. */
export function formatExact(iso) {
  const date = toDate(iso);
  return date ? `${exactFormat.format(date)} (${date.toISOString()})` : "";
}

/** "14:03:05", local. */
export function formatClock(date) {
  return clockFormat.format(date);
}

/** "Mon 30 Nov, 09:00" in the given IANA zone (for the cron preview). */
export function formatInZone(iso, timeZone) {
  const date = toDate(iso);
  if (!date) return "";
  let format = zoneFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {
      weekday: "short",
      day: "numeric",
      month: "short",
      hour: "2-digit",
      minute: "2-digit",
      timeZone,
    });
    zoneFormats.set(timeZone, format);
  }
  return format.format(date);
}

/** A cached Intl.DateTimeFormat of `options` in `timeZone`. */
function zoneFormat(timeZone, kind, options) {
  const key = `${kind} ${timeZone}`;
  let format = zoneFormats.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", { ...options, timeZone });
    zoneFormats.set(key, format);
  }
  return format;
}

/**
 * "09:00:37" in the given IANA zone: a run's start after its slot (jitter); with its day ("Tue 1 Dec, 00:02:11")
 * when that is not the day of `sameDayAs`.
 */
export function formatSecondsInZone(iso, timeZone, sameDayAs = iso) {
  const date = toDate(iso);
  if (!date) return "";
  const clock = zoneFormat(timeZone, "clock", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dayFormat = zoneFormat(timeZone, "day", { weekday: "short", day: "numeric", month: "short" });
  const day = dayFormat.format(date);
  const other = toDate(sameDayAs);
  return other && dayFormat.format(other) === day ? clock.format(date) : `${day}, ${clock.format(date)}`;
}

/** "2026-11-01 00:00" (seconds too when it has any), in local time: the compact form a span of slots reads in. */
export function formatCompact(iso) {
  const date = toDate(iso);
  if (!date) return "";
  const pad = (number) => String(number).padStart(2, "0");
  const text =
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    ` ${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return date.getSeconds() ? `${text}:${pad(date.getSeconds())}` : text;
}

/** A Date as a datetime-local value ("2025-03-29T14:05"), in the viewer's zone, to the minute. */
export function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

/** A datetime-local value, read in the viewer's zone, as ISO 8601 UTC; null when empty or not a time. */
export function utcFromLocalInput(value) {
  if (!value) return null;
  const date = new Date(value); // a date-time without an offset is local time
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** The zone's short name at that instant, e.g. "CET" or "GMT+1". */
export function zoneAbbreviation(timeZone, date = new Date()) {
  try {
    const parts = new Intl.DateTimeFormat("en-GB", { timeZone, timeZoneName: "short" }).formatToParts(date);
    return parts.find((part) => part.type === "timeZoneName")?.value ?? timeZone;
  } catch {
    return timeZone;
  }
}

/** "Just now", "5m ago", "2h ago", "3d ago"; and for the future "in 40s", "in 5m", "in 2h", "in 3d". */
export function formatRelative(iso, now = Date.now()) {
  const date = toDate(iso);
  if (!date) return "";
  const deltaMs = date.getTime() - now;
  const abs = Math.abs(deltaMs);
  if (abs < 45_000) return deltaMs > 0 ? `in ${Math.max(1, Math.round(abs / 1000))}s` : "Just now";
  let text;
  if (abs < HOUR_MS) text = `${Math.round(abs / MINUTE_MS)}m`;
  else if (abs < DAY_MS) text = `${Math.round(abs / HOUR_MS)}h`;
  else text = `${Math.round(abs / DAY_MS)}d`;
  return deltaMs > 0 ? `in ${text}` : `${text} ago`;
}

/** "850 ms", "1.2 s", "2m 05s", "1h 02m". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < MINUTE_MS) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < HOUR_MS) {
    const seconds = Math.round((ms % MINUTE_MS) / 1000);
    return `${Math.floor(ms / MINUTE_MS)}m ${String(seconds).padStart(2, "0")}s`;
  }
  const minutes = Math.round((ms % HOUR_MS) / MINUTE_MS);
  return `${Math.floor(ms / HOUR_MS)}h ${String(minutes).padStart(2, "0")}m`;
}

/** The units the interval editor offers, smallest first; `ms` is each unit's length. */
export const INTERVAL_UNITS = [
  { ms: 1, label: "milliseconds" },
  { ms: SECOND_MS, label: "seconds" },
  { ms: MINUTE_MS, label: "minutes" },
  { ms: HOUR_MS, label: "hours" },
  { ms: DAY_MS, label: "days" },
];

/**
 * An interval as a whole number of the largest unit that divides it exactly, so the editor shows the stored
 * value unrounded: 5_000 → {value: 5, unitMs: 1000}, 1_500 → {value: 1500, unitMs: 1}. Never a fraction.
 */
export function splitInterval(intervalMs) {
  for (const unit of [...INTERVAL_UNITS].reverse()) {
    if (intervalMs % unit.ms === 0) return { value: intervalMs / unit.ms, unitMs: unit.ms };
  }
  return { value: intervalMs, unitMs: 1 }; // not a whole number of ms: no server stores one
}
