// Group classes, through the class_sessions function: its seats shown on the classes list,
// and the form that creates one. Where class_sessions is not deployed (404) the form says so.

import { call } from "./api.js";
import { h, link, localIso, say } from "./dom.js";
import { t } from "./i18n.js";
import { loadClasses, setSeats } from "./classes.js";
import { explain, toast } from "./ui.js";

let available = true;

/** Read the upcoming sessions, for the seats taken on each (none where there is no function). */
export async function loadSessions() {
  const result = await call("class_sessions");
  if (!result.ok) {
    if (result.status === 404 || result.status === 405) markUnavailable();
    return;
  }
  const list = Array.isArray(result.body) ? result.body : result.body?.sessions ?? [];
  const seats = new Map();
  for (const session of list) {
    if (session?.googleEventId) {
      seats.set(session.googleEventId, { capacity: session.capacity, seatsTaken: session.seatsTaken ?? 0 });
    }
  }
  setSeats(seats);
}

function markUnavailable() {
  available = false;
  document.getElementById("session-unavailable").hidden = false;
}

async function create(form) {
  say("session-message", "");
  const value = (name) => form.elements[name].value.trim();
  const body = {
    title: value("title"),
    teacher: { name: value("teacherName"), email: value("teacherEmail").toLowerCase() },
    start: localIso(value("date"), value("start")),
    end: localIso(value("date"), value("end")),
    capacity: Number.parseInt(value("capacity"), 10),
    price: { amount: Number(value("amount")), currency: value("currency") },
  };
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  const result = await call("class_sessions", { method: "POST", body });
  submit.disabled = false;
  if (!result.ok) {
    if (result.status === 404 && !result.message) {
      markUnavailable();
      say("session-message", t("sessionUnavailable"));
      return;
    }
    explain(result, "session-message");
    return;
  }
  const created = result.body;
  const box = document.getElementById("session-result");
  box.replaceChildren(
    h("p", {}, t("sessionCreated", { taken: created.seatsTaken ?? 0, capacity: created.capacity })),
    created.meetLink ? h("p", {}, link(created.meetLink, created.meetLink)) : null,
  );
  box.hidden = false;
  toast(t("sessionCreated", { taken: created.seatsTaken ?? 0, capacity: created.capacity }));
  form.reset();
  await loadSessions();
  await loadClasses();
}

export function initSessions() {
  const form = document.getElementById("session-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    create(form);
  });
}

export function sessionsAvailable() {
  return available;
}
