// Integration health: the Google grant, the watch channel, the last sync and the last
// reconcile sweep, from the console's own view (`?view=health`).

import { call } from "./api.js";
import { h, say, whenLabel } from "./dom.js";
import { t } from "./i18n.js";
import { emit, explain } from "./ui.js";

let last = null;

/** Read the health view; says whether Google must be reconnected (true), or null on failure. */
export async function loadHealth() {
  say("health-message", "");
  const result = await call("admin_console", { query: { view: "health" } });
  if (!result.ok) {
    explain(result, "health-message");
    return null;
  }
  last = result.body;
  render();
  const lost = last.grant.state === "needs_reconsent";
  emit(lost ? "reconsent" : "connected");
  return lost;
}

export function render() {
  if (!last) return;
  const { grant, watch, sync, reconcile } = last;
  const cards = [
    card("grant", t("healthGrant"), grant.state, t(`grant_${grant.state}`), [
      grant.connectedBy ? t("connectedBy", { who: grant.connectedBy, at: whenLabel(grant.connectedAt) }) : null,
      grant.unusableSince && grant.state !== "connected" ? t("unusableSince", { at: whenLabel(grant.unusableSince) }) : null,
      grant.calendarId,
      grant.check && !grant.check.ok ? grant.check.message : null,
    ]),
    card("watch", t("healthWatch"), watch.state, t(`watch_${watch.state}`), [
      watch.expiration ? t("expires", { at: whenLabel(watch.expiration) }) : null,
      watch.renewedAt ? t("renewedAt", { at: whenLabel(watch.renewedAt) }) : null,
      watch.channelId,
    ]),
    card("sync", t("healthSync"), sync.lastSyncAt ? "ok" : "unknown", sync.lastSyncAt ? whenLabel(sync.lastSyncAt) : t("syncNever"), [
      sync.lastRound ? t("syncRound", { events: sync.lastRound.events ?? 0, applied: sync.lastRound.applied ?? 0 }) : null,
    ]),
    card(
      "reconcile",
      t("healthReconcile"),
      reconcile.lastRunAt ? "ok" : "unknown",
      reconcile.lastRunAt ? t("reconcileAt", { at: whenLabel(reconcile.lastRunAt), bookings: reconcile.bookings }) : t("unknown"),
      Object.entries(reconcile.counts || {}).map(([outcome, count]) => `${outcome}: ${count}`),
    ),
  ];
  document.getElementById("health").replaceChildren(
    ...cards,
    h("p", { class: "hint" }, t("checkedAt", { at: whenLabel(last.checkedAt) })),
  );
}

function card(name, title, state, headline, lines) {
  return h(
    "article",
    { class: `card state-${state}`, "data-card": name, "data-state": state },
    h("h3", {}, title),
    h("p", { class: "headline" }, headline),
    h("ul", {}, ...lines.filter(Boolean).map((line) => h("li", {}, line))),
  );
}
