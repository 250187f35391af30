// What every view shares: the toast, the reconnect banner, and what a failed call means.

import { t } from "./i18n.js";
import { say } from "./dom.js";

let toastTimer = null;

/** A short confirmation, read out by screen readers too. */
export function toast(text) {
  const element = document.getElementById("toast");
  element.textContent = text;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    element.hidden = true;
  }, 6000);
}

/** Tell the page something happened: signed-out, refused, reconsent. */
export function emit(name, detail = {}) {
  document.dispatchEvent(new CustomEvent(`console:${name}`, { detail }));
}

/**
 * What a failed call means for the person: a lost session or a refused account changes the
 * whole page; a lost Google grant shows the banner; anything else is said where it happened
 * (`messageId`), in words. Returns the text shown, if any.
 */
export function explain(result, messageId) {
  if (result.code === "signed_out" || result.status === 401) {
    emit("signed-out", { expired: true });
    return "";
  }
  if (result.status === 403) {
    emit("refused", { message: result.message });
    return "";
  }
  if (result.code === "reauthorization_required") emit("reconsent");
  let text;
  if (result.code === "network") text = t("network");
  else if (result.code === "reauthorization_required") text = t("reconsentText");
  else if (result.status === 503) text = t("unavailable");
  else text = t("failed", { message: result.message || result.code });
  if (messageId) say(messageId, text);
  return text;
}
