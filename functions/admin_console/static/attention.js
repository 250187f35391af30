// "Needs attention": what happened, when, and what the admin can do about it, from the
// console's own view (`?view=attention`); marking an item handled keeps its history.

import { call } from "./api.js";
import { h, link, say, whenLabel } from "./dom.js";
import { has, t } from "./i18n.js";
import { onConfirm, openCancel } from "./classes.js";
import { explain, toast } from "./ui.js";

const state = { items: [], handled: [], truncated: false };

/** Read the queue again and redraw it (and the tab's counter). */
export async function loadAttention() {
  say("attention-message", "");
  const result = await call("admin_console", { query: { view: "attention" } });
  if (!result.ok) {
    explain(result, "attention-message");
    return;
  }
  state.items = result.body.items;
  state.handled = result.body.handled;
  state.truncated = result.body.truncated;
  render();
}

export function render() {
  const count = document.getElementById("attention-count");
  count.textContent = String(state.items.length);
  count.hidden = state.items.length === 0;
  const list = document.getElementById("attention");
  const items = state.items.map((item) => card(item, true));
  if (state.truncated) items.unshift(h("p", { class: "hint" }, t("truncated")));
  list.replaceChildren(...(items.length ? items : [h("p", { class: "hint" }, t("attentionEmpty"))]));
  document.getElementById("handled").replaceChildren(...state.handled.map((item) => card(item, false)));
  document.getElementById("handled-box").hidden = state.handled.length === 0;
}

function text(prefix, item) {
  const key = `${prefix}_${item.kind}`;
  return has(key) ? t(key) : t(`${prefix}_other`, { kind: item.kind });
}

function facts(item) {
  const lines = [];
  const booking = item.booking;
  if (booking) {
    const title = booking.classTitle || "—";
    lines.push(`${title}${booking.start ? ` · ${whenLabel(booking.start)}` : ""}`);
    if (booking.student) lines.push(`${t("student")}: ${person(booking.student)}`);
    if (booking.teacher) lines.push(`${t("teacher")}: ${person(booking.teacher)}`);
  }
  const ids = [];
  if (item.bookingId) ids.push(t("booking_id", { id: item.bookingId }));
  if (item.paymentId) ids.push(t("payment_id", { id: item.paymentId }));
  if (booking?.paymentStatus) ids.push(`${t("payment")}: ${t(`payment_${booking.paymentStatus}`)}`);
  if (ids.length) lines.push(ids.join(" · "));
  for (const [name, value] of Object.entries(item.details || {})) lines.push(`${name}: ${value}`);
  return lines;
}

function person(raw) {
  if (raw.name && raw.email) return `${raw.name} <${raw.email}>`;
  return raw.name || raw.email || "—";
}

function card(item, open) {
  const actions = [];
  for (const action of open ? item.actions : []) {
    if (action === "open_event") actions.push(link(item.booking?.htmlLink, t("openEvent")));
    if (action === "mark_handled") actions.push(button("mark_handled", t("markHandled"), () => openHandled(item)));
    if (action === "refund") actions.push(button("refund", t("refund"), () => refund(item)));
    if (action === "cancel") actions.push(button("cancel", t("cancel"), () => cancel(item)));
  }
  return h(
    "article",
    { class: `attention-item kind-${item.kind}`, "data-item-id": item.id },
    h("header", {}, h("h3", {}, text("kind", item)), h("time", { datetime: item.when || "" }, whenLabel(item.when))),
    h("p", { class: "what" }, text("what", item)),
    h("ul", { class: "facts" }, ...facts(item).map((line) => h("li", {}, line))),
    open
      ? h("p", { class: "todo" }, h("strong", {}, `${t("whatToDo")}: `), text("do", item))
      : h("p", { class: "hint" }, t("handledBy", { by: item.handled.by, at: whenLabel(item.handled.at) }), item.handled.note ? ` — ${item.handled.note}` : ""),
    h("div", { class: "actions" }, ...actions),
  );
}

function button(action, label, onClick) {
  const element = h("button", { type: "button", "data-action": action, class: action === "refund" || action === "cancel" ? "danger" : null }, label);
  element.addEventListener("click", onClick);
  return element;
}

function label(item) {
  const title = item.booking?.classTitle || text("kind", item);
  return `${title}${item.booking?.start ? ` · ${whenLabel(item.booking.start)}` : ""}`;
}

function refund(item) {
  openCancel(
    { bookingId: item.bookingId, label: label(item) },
    { refund: true, refundOnly: true, done: () => loadAttention() },
  );
}

function cancel(item) {
  openCancel({ bookingId: item.bookingId, label: label(item) }, { done: () => loadAttention() });
}

// -- mark handled -------------------------------------------------------------------------

let marking = null;

function openHandled(item) {
  const dialog = document.getElementById("handled-dialog");
  dialog.querySelector("form").reset();
  document.getElementById("handled-what").textContent = `${text("kind", item)} · ${label(item)}`;
  say("handled-message", "");
  marking = item;
  dialog.showModal();
}

async function confirmHandled(form) {
  const item = marking;
  const body = { action: "mark_handled", itemId: item.id, kind: item.kind };
  const note = form.elements.note.value.trim();
  if (note) body.note = note;
  const confirm = document.getElementById("handled-confirm");
  confirm.disabled = true;
  const result = await call("admin_console", { method: "POST", body });
  confirm.disabled = false;
  if (!result.ok) {
    explain(result, "handled-message");
    return;
  }
  document.getElementById("handled-dialog").close();
  state.items = state.items.filter((other) => other.id !== item.id);
  state.handled.unshift({ ...item, handled: result.body.handled });
  render();
  toast(t("markedHandled"));
}

/** Hook the dialog up once. */
export function initAttention() {
  onConfirm("handled-dialog", confirmHandled);
}
