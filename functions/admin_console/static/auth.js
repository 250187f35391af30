// Sign-in: a Google ID token for the configured audience, kept in this tab only
// (sessionStorage: gone when the tab closes) and sent only as Authorization: Bearer to the
// platform's own functions. In production it comes from Google Identity Services; on the
// local stack from the OAuth emulator's sign-in page, which sends the browser back here with
// the token in the URL fragment (never sent to a server), checked against the state we made.

const TOKEN_KEY = "console.idToken";
const STATE_KEY = "console.signInState";
const GIS_SCRIPT = "https://accounts.google.com/gsi/client";
const EXPIRY_MARGIN_SECONDS = 60;

let config = null;
let onToken = () => {};

/** The token's claims (for the email and expiry shown; the server verifies it). */
export function claims(token = currentToken()) {
  if (!token) return null;
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** The ID token, if there is one that has not expired (nor is about to). */
export function currentToken() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const payload = claims(token);
  if (!payload || typeof payload.exp !== "number") return null;
  if (payload.exp - EXPIRY_MARGIN_SECONDS < Date.now() / 1000) {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
  return token;
}

/** Forget the token (sign out, or a token the server refused). */
export function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  if (config?.mode === "google" && window.google?.accounts?.id) {
    window.google.accounts.id.disableAutoSelect();
  }
}

/**
 * Start: take a token the emulator just handed back (fragment), and get the sign-in button
 * ready. `tokenArrived` runs when a new token is there.
 */
export function start(signInConfig, tokenArrived) {
  config = signInConfig;
  onToken = tokenArrived;
  if (config.mode === "emulator") takeTokenFromFragment();
}

function takeTokenFromFragment() {
  if (!location.hash.includes("id_token=")) return;
  const params = new URLSearchParams(location.hash.slice(1));
  const expected = sessionStorage.getItem(STATE_KEY);
  sessionStorage.removeItem(STATE_KEY);
  history.replaceState(null, "", location.pathname + location.search);
  if (expected && params.get("state") === expected && params.get("id_token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("id_token"));
  }
}

/**
 * Show the way to sign in: Google's button (production) or ours (the emulator). False when
 * sign-in is not configured; `failed` runs if Google's library cannot be loaded.
 */
export function offerSignIn(button, googleSlot, failed = () => {}) {
  if (!config.clientId) return false;
  // Google Identity Services needs a Web client id; the default audience (a URL) is not one.
  if (config.mode === "google" && !config.clientId.endsWith(".apps.googleusercontent.com")) return false;
  if (config.mode === "emulator") {
    button.hidden = false;
    button.onclick = () => {
      const state = randomState();
      sessionStorage.setItem(STATE_KEY, state);
      const target = new URL("/_emulator/oauth/sign-in", config.emulator);
      target.searchParams.set("audience", config.clientId);
      target.searchParams.set("redirect_uri", location.origin + location.pathname);
      target.searchParams.set("state", state);
      location.assign(target.href);
    };
    return true;
  }
  button.hidden = true;
  loadGoogle().catch(failed).then(() => {
    if (!window.google?.accounts?.id) return;
    window.google.accounts.id.initialize({
      client_id: config.clientId,
      auto_select: true,
      callback: (response) => {
        sessionStorage.setItem(TOKEN_KEY, response.credential);
        onToken();
      },
    });
    window.google.accounts.id.renderButton(googleSlot, { theme: "outline", size: "large", text: "signin_with" });
    window.google.accounts.id.prompt();
  });
  return true;
}

function loadGoogle() {
  if (window.google?.accounts?.id) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = GIS_SCRIPT;
    script.async = true;
    script.onload = () => resolve();
    script.onerror = () => reject(new Error("Google Identity Services did not load"));
    document.head.append(script);
  });
}

function randomState() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
