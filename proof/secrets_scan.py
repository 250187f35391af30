"""Part 3, secrets: nothing secret in any log line the stack wrote, nor in any document.

Scanned: every log file in the proof stack's directory (each function's output, the
Firestore emulator's, and this process's own log, where the in-process emulators write),
and every Firestore document of every collection and subcollection, read straight from the
emulator. Searched for:

- the exact value of each secret: both of `stack.json` `secrets`, every version of every
  secret the Secret Manager emulator holds (and, inside the OAuth client JSON, its
  `client_secret`), and the token of every live Calendar push channel;
- token shapes: Google access tokens (`ya29.`), refresh tokens (`1//`), authorization codes
  (`4/0`), JSON Web Tokens (`eyJ….eyJ….`), Mercado Pago access tokens (`APP_USR-`, `TEST-`).

Figure: matches, by file or collection (each listed as a place and a kind, never the value).
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from google.cloud import firestore

from proof.harness import ProofStack, http_session

TOKEN_SHAPES = {
    "Google access token": re.compile(r"ya29\.[0-9A-Za-z_\-]{20,}"),
    "Google refresh token": re.compile(r"1//[0-9A-Za-z_\-]{20,}"),
    "Google authorization code": re.compile(r"\b4/0[0-9A-Za-z_\-]{20,}"),
    "JSON Web Token": re.compile(r"eyJ[0-9A-Za-z_\-]{8,}\.eyJ[0-9A-Za-z_\-]{8,}\.[0-9A-Za-z_\-]*"),
    "Mercado Pago access token": re.compile(r"\b(?:APP_USR|TEST)-[0-9A-Za-z]+-[0-9A-Za-z_\-]{8,}"),
}


def secret_values(stack: ProofStack) -> dict[str, str]:
    """name -> exact value, for every secret this stack knows of."""
    doc = stack.document
    values = {f"stack.json secrets.{k}": str(v) for k, v in doc["secrets"].items()}
    values["stack.json oauth.client_secret"] = doc["oauth"]["client_secret"]
    values["stack.json oauth.refresh_token"] = doc["oauth"]["refresh_token"]
    http = http_session()
    base = doc["emulators"]["secretmanager"]
    project = f"projects/{doc['project_id']}"
    listed = http.get(f"{base}/v1/{project}/secrets", timeout=10).json()
    for secret in listed.get("secrets", []):
        name = secret["name"]
        versions = http.get(f"{base}/v1/{name}/versions", timeout=10).json()
        for version in versions.get("versions", []):
            answer = http.get(f"{base}/v1/{version['name']}:access", timeout=10)
            if answer.status_code != 200:
                continue
            value = base64.b64decode(answer.json()["payload"]["data"]).decode()
            label = (
                f"Secret Manager {name.rsplit('/', 1)[-1]} v{version['name'].rsplit('/', 1)[-1]}"
            )
            values[label] = value
            try:
                inner = json.loads(value)
            except ValueError:
                continue
            if isinstance(inner, dict):
                for section in inner.values():
                    if isinstance(section, dict) and section.get("client_secret"):
                        values[label + " client_secret"] = str(section["client_secret"])
    calendar = str(doc["emulators"]["calendar"]).split("/calendar/v3/")[0]
    for channel in http.get(f"{calendar}/_emulator/calendar/channels", timeout=10).json():
        if channel.get("token"):
            values[f"push channel {channel['id']} token"] = channel["token"]
    return {name: value for name, value in values.items() if len(value) >= 8}


def _scan_text(
    text: str, where: str, values: dict[str, str], found: Counter[str], samples: list[str]
) -> None:
    for name, value in values.items():
        hits = text.count(value)
        if hits:
            found[where] += hits
            samples.append(f"{where}: the value of {name} ({hits}x)")
    for kind, pattern in TOKEN_SHAPES.items():
        hits = len(pattern.findall(text))
        if hits:
            found[where] += hits
            samples.append(f"{where}: {hits} {kind} shape(s)")


def self_check(values: dict[str, str]) -> bool:
    """The scanner finds a planted value and one sample of every shape (it is not blind)."""
    samples = {
        "Google access token": "ya29." + "A1b2" * 8,
        "Google refresh token": "1//0" + "c3D4" * 8,
        "Google authorization code": " 4/0" + "e5F6" * 8,
        "JSON Web Token": "eyJ" + "hbGciOi" * 2 + ".eyJ" + "zdWIiOi" * 2 + ".c2ln",
        "Mercado Pago access token": " APP_USR-" + "1" * 16 + "-010203-" + "ab" * 8,
    }
    for kind, sample in samples.items():
        if not TOKEN_SHAPES[kind].search(sample):
            return False
    name, value = next(iter(values.items()))
    found: Counter[str] = Counter()
    notes: list[str] = []
    _scan_text(f'{{"message": "x", "v": "{value}"}}', "planted", {name: value}, found, notes)
    return found["planted"] == 1


def all_documents(db: firestore.Client) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    pending = list(db.collections())
    while pending:
        collection = pending.pop()
        for snap in collection.stream():
            out.append((snap.reference.path, snap.to_dict() or {}))
            pending.extend(snap.reference.collections())
    return out


def run_secrets(stack: ProofStack) -> dict[str, Any]:
    values = secret_values(stack)
    checked = self_check(values)
    found: Counter[str] = Counter()
    samples: list[str] = []
    lines = 0
    files: dict[str, int] = {}
    for path in stack.log_files():
        text = Path(path).read_text(errors="replace")
        count = text.count("\n")
        lines += count
        files[path.name] = count
        _scan_text(text, path.name, values, found, samples)
    documents = all_documents(stack.client().db)
    collections: Counter[str] = Counter()
    for document_path, data in documents:
        collection = document_path.split("/")[0]
        collections[collection] += 1
        text = json.dumps(data, default=str, ensure_ascii=False)
        _scan_text(text, f"firestore {collection}", values, found, samples)
    failures = [f"{n} match(es) in {where}" for where, n in sorted(found.items())]
    if not checked:
        failures.append("the scanner's self-check failed: it would miss a secret")
    return {
        "selfCheck": "passed" if checked else "FAILED",
        "secretsSearched": len(values),
        "secretNames": sorted(values),
        "tokenShapes": sorted(TOKEN_SHAPES),
        "logFiles": files,
        "logLines": lines,
        "documents": len(documents),
        "collections": dict(sorted(collections.items())),
        "matches": sum(found.values()),
        "matchesByPlace": dict(found),
        "matchSamples": samples[:20],
        "failures": failures,
    }
