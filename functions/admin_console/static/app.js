// The console's entry point: read the settings, sign in, then show the views and keep the
// reconnect banner honest.

import * as auth from "./auth.js";
import { call } from "./api.js";
import { loadAttention, initAttention, render as renderAttention } from "./attention.js";
import { initClasses, loadClasses, render as renderClasses } from "./classes.js";
import { say } from "./dom.js";
import { loadHealth, render as renderHealth } from "./health.js";
import { apply, t, toggle } from "./i18n.js";
import { initSessions, loadSessions } from "./sessions.js";
import { toast } from "./ui.js";

const RECHECK_MS = 4000;
const config = JSON.parse(document.querySelector('meta[name="console-config"]').content);
let recheckTimer = null;
let started = false;

function show(id) {
  for (const section of ["signin", "refused", "app"]) {
    document.getElementById(section).hidden = section !== id;
  }
}

function showSignIn(message = "") {
  show("signin");
  setWho(null);
  const ready = auth.offerSignIn(document.getElementById("sign-in"), document.getElementById("google-button"), () =>
    say("signin-message", t("signInFailed")),
  );
  say("signin-message", ready ? message : t("signInUnconfigured"));
}

function setWho(email) {
  const who = document.getElementById("who");
  who.textContent = email || "";
  who.hidden = !email;
  document.getElementById("sign-out").hidden = !email;
}

async function enter() {
  const claims = auth.claims();
  if (!auth.currentToken() || !claims) {
    showSignIn();
    return;
  }
  setWho(claims.email);
  show("app");
  if (!started) {
    started = true;
    initClasses();
    initAttention();
    initSessions();
  }
  selectView(location.hash.replace("#", "") || "classes");
  await Promise.all([loadHealth(), loadClasses(), loadAttention(), loadSessions()]);
}

function selectView(name) {
  const views = ["classes", "attention", "health", "session"];
  const chosen = views.includes(name) ? name : "classes";
  for (const view of views) {
    document.getElementById(`view-${view}`).hidden = view !== chosen;
    document.querySelector(`[role=tab][data-view="${view}"]`).setAttribute("aria-selected", String(view === chosen));
  }
}

// -- the reconnect banner --------------------------------------------------------------------

function showReconnect() {
  document.getElementById("banner").hidden = false;
  if (recheckTimer === null) {
    recheckTimer = setInterval(() => loadHealth(), RECHECK_MS);
  }
}

function hideReconnect() {
  const banner = document.getElementById("banner");
  const wasShown = !banner.hidden;
  banner.hidden = true;
  clearInterval(recheckTimer);
  recheckTimer = null;
  if (wasShown) {
    toast(t("reconnected"));
    loadClasses();
    loadAttention();
  }
}

async function reconnect() {
  const result = await call("oauth_start");
  if (!result.ok || !result.body?.authorizationUrl) {
    toast(t("failed", { message: result.message || result.code }));
    return;
  }
  window.open(result.body.authorizationUrl, "_blank", "noopener");
  toast(t("reconnectOpened"));
}

// -- wiring ----------------------------------------------------------------------------------

document.addEventListener("console:reconsent", showReconnect);
document.addEventListener("console:connected", hideReconnect);
document.addEventListener("console:signed-out", (event) => {
  auth.forget();
  showSignIn(event.detail.expired ? t("sessionExpired") : "");
});
document.addEventListener("console:refused", (event) => {
  show("refused");
  const email = auth.claims()?.email ?? "";
  document.getElementById("refused-text").textContent = t("refusedText", { email });
  setWho(email);
  if (event.detail.message) document.getElementById("refused-text").title = event.detail.message;
});

document.getElementById("lang").addEventListener("click", () => {
  toggle();
  renderClasses();
  renderAttention();
  renderHealth();
});
document.getElementById("sign-out").addEventListener("click", () => {
  auth.forget();
  showSignIn();
});
document.getElementById("switch-account").addEventListener("click", () => {
  auth.forget();
  showSignIn();
});
document.getElementById("reconnect").addEventListener("click", reconnect);
document.getElementById("recheck").addEventListener("click", () => loadHealth());
for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => {
    history.replaceState(null, "", `#${tab.dataset.view}`);
    selectView(tab.dataset.view);
  });
}
window.addEventListener("focus", () => {
  if (!document.getElementById("banner").hidden) loadHealth();
});

apply();
auth.start(config.signIn, () => enter());
enter();
