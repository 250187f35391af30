// Calls to the platform's functions, all on this origin (cloudfunctions.net in production,
// the local stack's gateway locally), with the admin's ID token as Authorization: Bearer.

import { currentToken } from "./auth.js";

/** Where the sibling function `name` answers: beside this page's own path. */
export function functionUrl(name, query = {}) {
  const base = location.pathname.replace(/admin_console\/?$/, "");
  const url = new URL(`${base}${name}`, location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url.href;
}

/**
 * Call a function. The answer is {ok, status, body} on success, or {ok: false, status,
 * code, message} (the platform's error shape; code "network" when nothing answered,
 * "signed_out" when there is no token).
 */
export async function call(name, { method = "GET", query = {}, body, accept = "application/json" } = {}) {
  const token = currentToken();
  if (!token) return { ok: false, status: 401, code: "signed_out", message: "" };
  const headers = { Authorization: `Bearer ${token}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(functionUrl(name, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
  } catch {
    return { ok: false, status: 0, code: "network", message: "" };
  }
  if (accept !== "application/json" && response.ok) {
    return { ok: true, status: response.status, body: await response.blob() };
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (response.ok) return { ok: true, status: response.status, body: parsed };
  const error = parsed?.error ?? {};
  return {
    ok: false,
    status: response.status,
    code: error.code ?? (response.status === 404 ? "not_found" : "http_error"),
    message: typeof error.message === "string" ? error.message : "",
  };
}
