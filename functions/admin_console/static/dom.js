// Building the page from data: every value becomes text (textContent or a text node), never
// markup, and links only ever point at http(s) addresses.

import { locale } from "./i18n.js";

export const TIME_ZONE = "America/Argentina/Buenos_Aires";

/**
 * An element: `h("p", {class: "x"}, "text", child)`. Strings and numbers become text nodes;
 * attributes are set one by one (no event handler attributes, no markup anywhere).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) throw new Error("no inline handlers");
    if (name === "href") {
      const url = safeUrl(value);
      if (url) element.setAttribute("href", url);
      continue;
    }
    element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** `value` if it is an absolute http(s) URL, else null (no javascript:, data:...). */
export function safeUrl(value) {
  try {
    const url = new URL(String(value), location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens elsewhere, or the plain text when the URL is not http(s). */
export function link(url, text) {
  const safe = safeUrl(url);
  if (!safe) return h("span", {}, text);
  return h("a", { href: safe, target: "_blank", rel: "noopener noreferrer" }, text);
}

/** Show `text` in the element with id `id` (hidden when empty). */
export function say(id, text) {
  const element = document.getElementById(id);
  element.textContent = text || "";
  element.hidden = !text;
}

function format(options) {
  return new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, ...options });
}

/** "martes, 1 de diciembre de 2026" in Buenos Aires. */
export function dayLabel(iso) {
  return format({ weekday: "long", day: "numeric", month: "long", year: "numeric" }).format(new Date(iso));
}

/** "18:00" in Buenos Aires. */
export function timeLabel(iso) {
  return format({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(iso));
}

/** "1/12/2026 18:00" in Buenos Aires. */
export function whenLabel(iso) {
  if (!iso) return "";
  return format({ dateStyle: "short", timeStyle: "short", hourCycle: "h23" }).format(new Date(iso));
}

/** The Buenos Aires calendar date of an instant, as YYYY-MM-DD (for grouping and pickers). */
export function localDate(iso) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-CA", { timeZone: TIME_ZONE, year: "numeric", month: "2-digit", day: "2-digit" })
      .formatToParts(new Date(iso))
      .map((part) => [part.type, part.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day}`;
}

/** The Buenos Aires wall-clock time of an instant, as HH:MM (for the time pickers). */
export function localTime(iso) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: TIME_ZONE, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(iso));
}

/** Buenos Aires' UTC offset on a date ("-03:00"), from the browser's time zone data. */
export function offsetOn(date) {
  const name = new Intl.DateTimeFormat("en-US", { timeZone: TIME_ZONE, timeZoneName: "longOffset" })
    .formatToParts(new Date(`${date}T12:00:00Z`))
    .find((part) => part.type === "timeZoneName").value;
  const match = /GMT([+-]\d{2}:\d{2})/.exec(name);
  return match ? match[1] : "+00:00";
}

/** A date (YYYY-MM-DD) and a time (HH:MM) in Buenos Aires, as ISO 8601 with its offset. */
export function localIso(date, time) {
  return `${date}T${time}:00${offsetOn(date)}`;
}

/** The date `days` after `date` (YYYY-MM-DD), in calendar days. */
export function addDays(date, days) {
  const day = new Date(`${date}T12:00:00Z`);
  day.setUTCDate(day.getUTCDate() + days);
  return day.toISOString().slice(0, 10);
}
