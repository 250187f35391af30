"""Push notifications: watch channels and their deliveries to the receiver's address.

Why apart from the store: a delivery is a real HTTP request to another server, made from a
background thread so the API call that caused it never waits for the receiver; the store
only says which channel has news.
"""

from __future__ import annotations

import email.utils
import http.client
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NOTIFY_USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


@dataclass
class Channel:
    """A watch channel: where `events.watch` asked for notifications, and how many it got."""

    id: str
    resource_id: str
    resource_uri: str
    calendar_id: str
    address: str
    token: str | None
    expiration_ms: int
    message_number: int = 0

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
        }
        if self.token is not None:
            out["token"] = self.token
        out["expiration"] = str(self.expiration_ms)
        return out


@dataclass
class _Delivery:
    """One notification waiting for the delivery thread."""

    channel: Channel
    state: str
    number: int


class Notifier:
    """Delivers push notifications from one background thread, in order, never retried.

    Why one thread: messages of a channel must arrive in order (`sync` first) and the
    API request that caused them must never wait for the receiver.
    """

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="calendar-notifier", daemon=True)
        self._thread.start()

    def enqueue(self, channel: Channel, state: str, number: int) -> None:
        self._queue.put(_Delivery(channel, state, number))

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Waits until every queued delivery was attempted (for tests and control routes)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def log(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, item: _Delivery) -> None:
        ch = item.channel
        headers = {
            "X-Goog-Channel-ID": ch.id,
            "X-Goog-Channel-Expiration": email.utils.formatdate(
                ch.expiration_ms / 1000, usegmt=True
            ),
            "X-Goog-Resource-ID": ch.resource_id,
            "X-Goog-Resource-URI": ch.resource_uri,
            "X-Goog-Resource-State": item.state,
            "X-Goog-Message-Number": str(item.number),
            "Content-Length": "0",
            "User-Agent": NOTIFY_USER_AGENT,
        }
        if ch.token is not None:
            headers["X-Goog-Channel-Token"] = ch.token
        entry: dict[str, Any] = {
            "channelId": ch.id,
            "resourceId": ch.resource_id,
            "state": item.state,
            "messageNumber": item.number,
            "address": ch.address,
            "status": None,
            "error": None,
        }
        try:
            parts = urlsplit(ch.address)
            conn_cls = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = conn_cls(parts.netloc, timeout=self.timeout_s)
            try:
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                conn.request("POST", path, body=b"", headers=headers)
                resp = conn.getresponse()
                resp.read()
                entry["status"] = resp.status
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        with self._log_lock:
            self._log.append(entry)


__all__ = ["Channel", "Notifier"]
