// Upcoming classes by day, with filters, the ICS download, and the two changes an admin
// makes to a class: cancel it (refunding it or not) and reschedule it.

import { call } from "./api.js";
import { addDays, dayLabel, h, link, localDate, localIso, localTime, say, timeLabel, whenLabel } from "./dom.js";
import { t } from "./i18n.js";
import { explain, toast } from "./ui.js";

const CANCELLABLE = new Set(["scheduled", "paid", "awaiting_payment"]);
const state = { items: [], next: null, query: {}, seats: new Map(), loading: false };

/** Seats of group sessions, by their Calendar event id (from class_sessions). */
export function setSeats(seats) {
  state.seats = seats;
  render();
}

function filters() {
  const form = document.getElementById("filters");
  const value = (name) => form.elements[name].value.trim();
  const query = {};
  if (value("teacher")) query.teacher = value("teacher").toLowerCase();
  if (value("status")) query.status = value("status");
  if (value("from")) query.from = localIso(value("from"), "00:00");
  if (value("to")) query.to = localIso(addDays(value("to"), 1), "00:00");
  return query;
}

/** Read the first page for the filters (or the next page, with `more`). */
export async function loadClasses({ more = false } = {}) {
  if (state.loading) return;
  state.loading = true;
  say("classes-message", "");
  if (!more) {
    state.query = filters();
    state.next = null;
    document.getElementById("classes").replaceChildren(h("p", { class: "hint" }, t("loading")));
  }
  const query = { ...state.query, limit: 50 };
  if (more && state.next) query.pageToken = state.next;
  const result = await call("list_events", { query });
  state.loading = false;
  if (!result.ok) {
    if (!more) state.items = [];
    render();
    explain(result, "classes-message");
    return;
  }
  state.items = more ? state.items.concat(result.body.events) : result.body.events;
  state.next = result.body.nextPageToken;
  render();
}

/** Draw the list from the state: days, then classes. */
export function render() {
  const container = document.getElementById("classes");
  document.getElementById("more").hidden = !state.next;
  if (state.loading) return;
  if (!state.items.length) {
    container.replaceChildren(h("p", { class: "hint" }, t("noClasses")));
    return;
  }
  const days = new Map();
  for (const item of state.items) {
    const day = dayOf(item.start);
    if (!days.has(day)) days.set(day, []);
    days.get(day).push(item);
  }
  container.replaceChildren(
    ...Array.from(days, ([day, items]) =>
      h("section", { class: "day" }, h("h2", {}, dayTitle(day)), ...items.map(row)),
    ),
  );
}

function dayOf(start) {
  if (!start) return "";
  return start.length === 10 ? start : localDate(start);
}

function dayTitle(day) {
  return day ? dayLabel(`${day}T12:00:00-03:00`) : "—";
}

function timeRange(item) {
  if (!item.start || item.start.length === 10) return "—";
  return `${timeLabel(item.start)}–${item.end ? timeLabel(item.end) : ""}`;
}

function person(raw) {
  if (!raw) return "—";
  if (raw.name && raw.email) return `${raw.name} <${raw.email}>`;
  return raw.name || raw.email || "—";
}

function row(item) {
  const seats = state.seats.get(item.id);
  const who = seats
    ? h("span", { class: "seats" }, t("seats", { taken: seats.seatsTaken, capacity: seats.capacity }))
    : item.hasBooking
      ? h("span", { class: "student" }, `${t("student")}: ${person(item.student)}`)
      : h("span", { class: "student" }, t("noBooking"));
  const teacher = item.teacher
    ? h("span", { class: "teacher" }, `${t("teacher")}: ${person(item.teacher)}`)
    : null;
  const chips = [];
  if (item.status) chips.push(h("span", { class: `chip status-${item.status}` }, t(`status_${item.status}`)));
  if (item.hasBooking) {
    const payment = item.paymentStatus ? t(`payment_${item.paymentStatus}`) : t("payment_none");
    chips.push(h("span", { class: "chip" }, `${t("payment")}: ${payment}`));
  }
  const actions = [];
  if (item.bookingId && item.hasBooking && CANCELLABLE.has(item.status)) {
    actions.push(
      h("button", { type: "button", class: "danger", "data-action": "cancel" }, t("cancel")),
    );
  }
  if (item.bookingId && item.status === "scheduled") {
    actions.push(h("button", { type: "button", "data-action": "reschedule" }, t("reschedule")));
  }
  const article = h(
    "article",
    { class: "class-row", "data-booking-id": item.bookingId, "data-event-id": item.id },
    h("div", { class: "time" }, timeRange(item)),
    h(
      "div",
      { class: "main" },
      h("h3", { class: "title" }, item.summary || "—"),
      h("p", { class: "people" }, teacher, teacher ? " · " : null, who),
      h("p", { class: "chips" }, ...chips),
    ),
    h(
      "div",
      { class: "links" },
      item.meetLink ? link(item.meetLink, t("meet")) : null,
      item.htmlLink ? link(item.htmlLink, t("calendar")) : null,
    ),
    h("div", { class: "actions" }, ...actions),
  );
  for (const button of article.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () =>
      button.dataset.action === "cancel" ? openCancel(target(item)) : openReschedule(item),
    );
  }
  return article;
}

function target(item) {
  return {
    bookingId: item.bookingId,
    label: `${item.summary || "—"} · ${whenLabel(item.start)}`,
  };
}

/** Forget a class that is no longer upcoming (cancelled, from here or elsewhere). */
export function dropBooking(bookingId) {
  state.items = state.items.filter((item) => item.bookingId !== bookingId);
  render();
}

// -- cancel (and refund) ------------------------------------------------------------------

let cancelling = null;

/**
 * The cancel dialog for `booking` ({bookingId, label}); with `refund` it asks for the refund
 * (a class already cancelled: the refund alone). `done(answer)` runs after it worked.
 */
export function openCancel(booking, { refund = false, refundOnly = false, done = () => {} } = {}) {
  const dialog = document.getElementById("cancel-dialog");
  const form = dialog.querySelector("form");
  form.reset();
  form.elements.refund.checked = refund;
  form.elements.refund.disabled = refundOnly;
  document.getElementById("cancel-title").textContent = t(refundOnly ? "refundTitle" : "cancelTitle");
  document.getElementById("cancel-confirm").textContent = t(refundOnly ? "refundConfirm" : "cancelConfirm");
  document.getElementById("cancel-what").textContent = booking.label;
  say("cancel-message", "");
  cancelling = { booking, done, refundOnly };
  dialog.showModal();
}

async function confirmCancel(form) {
  const { booking, done, refundOnly } = cancelling;
  const refund = refundOnly || form.elements.refund.checked;
  const body = { bookingId: booking.bookingId, action: "cancel", refund };
  const reason = form.elements.reason.value.trim();
  if (reason) body.reason = reason;
  const button = document.getElementById("cancel-confirm");
  button.disabled = true;
  const result = await call("manage_booking", { method: "POST", body });
  button.disabled = false;
  if (!result.ok) {
    explain(result, "cancel-message");
    return;
  }
  document.getElementById("cancel-dialog").close();
  const answer = result.body;
  const refundStatus = answer.refund?.status;
  if (refundOnly) toast(t("refunded", { status: refundStatus ?? "—" }));
  else if (refundStatus) toast(t("cancelledRefund", { status: refundStatus }));
  else toast(t("cancelled"));
  if (answer.status !== "scheduled") dropBooking(booking.bookingId);
  done(answer);
}

// -- reschedule ------------------------------------------------------------------------------

let moving = null;

function openReschedule(item) {
  const dialog = document.getElementById("reschedule-dialog");
  const form = dialog.querySelector("form");
  form.reset();
  form.elements.date.value = localDate(item.start);
  form.elements.start.value = localTime(item.start);
  form.elements.end.value = item.end ? localTime(item.end) : "";
  document.getElementById("reschedule-what").textContent = target(item).label;
  say("reschedule-message", "");
  moving = item;
  dialog.showModal();
}

async function confirmReschedule(form) {
  const item = moving;
  const date = form.elements.date.value;
  const body = {
    bookingId: item.bookingId,
    action: "reschedule",
    start: `${date}T${form.elements.start.value}:00`,
    end: `${date}T${form.elements.end.value}:00`,
  };
  const button = document.getElementById("reschedule-confirm");
  button.disabled = true;
  const result = await call("manage_booking", { method: "POST", body });
  button.disabled = false;
  if (!result.ok) {
    if (result.status === 409) say("reschedule-message", refusal(result.message));
    else explain(result, "reschedule-message");
    return;
  }
  document.getElementById("reschedule-dialog").close();
  const answer = result.body;
  item.start = answer.start ?? item.start;
  item.end = answer.end ?? item.end;
  item.meetLink = answer.meetLink ?? item.meetLink;
  state.items.sort((a, b) => new Date(a.start) - new Date(b.start));
  render();
  toast(t("rescheduled", { when: `${whenLabel(item.start)}–${timeLabel(item.end)}` }));
}

/** The 409 in plain words: which class is in the way, and when (Buenos Aires time). */
function refusal(message) {
  const overlap = /another class then: (.*) \((\S+) to (\S+)\)\s*$/.exec(message);
  if (overlap) {
    const [, title, start, end] = overlap;
    return t("overlap", { other: `${title} (${whenLabel(start)}–${timeLabel(end)})` });
  }
  return t("notMovable", { message });
}

// -- ICS -----------------------------------------------------------------------------------

async function downloadIcs() {
  const query = { ...filters(), format: "ics" };
  const result = await call("list_events", { query, accept: "text/calendar" });
  if (!result.ok) {
    explain(result, "classes-message");
    return;
  }
  const url = URL.createObjectURL(result.body);
  const anchor = document.createElement("a"); // a blob: URL, made here from the answer
  anchor.href = url;
  anchor.download = "clases.ics";
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- wiring ----------------------------------------------------------------------------------

/** Hook the filters, the dialogs and the buttons up once. */
export function initClasses() {
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadClasses();
  });
  document.getElementById("more").addEventListener("click", () => loadClasses({ more: true }));
  document.getElementById("ics").addEventListener("click", downloadIcs);
  onConfirm("cancel-dialog", confirmCancel);
  onConfirm("reschedule-dialog", confirmReschedule);
}

/** A dialog's confirm button runs `action` and keeps the dialog open until it worked. */
export function onConfirm(dialogId, action) {
  const form = document.getElementById(dialogId).querySelector("form");
  form.addEventListener("submit", (event) => {
    if (event.submitter?.value !== "confirm") return;
    event.preventDefault();
    if (!form.reportValidity()) return;
    action(form);
  });
}
