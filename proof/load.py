"""Part 4, load: how many notifications per second one `payment_webhook` instance sustains.

The instance is the stack's own functions-framework process with the worker threads
`infra/functions.json` deploys it with (`concurrency`). Mercado Pago and Calendar answer
after a realistic latency (`--latency-ms`, the one `bench/payment_webhook.py` uses). Load
is open-loop, as senders do not wait for each other: payments arrive at a fixed rate and
each sends `payment.created` and `payment.updated` (signed) half an interval apart, so half
of the notifications find the class to create and half are duplicates. Each answer's time
counts from when it was due, so a queue in front of the instance shows in the figures.

Steps of `--step-seconds` at growing rates until p95 passes 1 s or an answer is not 200;
the figure is the highest rate whose p95 stayed under 1 s, with the serving process' RSS.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import threading
import time
import uuid
from typing import Any

import psutil
import requests

from devstack.client import StackClient
from devstack.when import at
from proof.harness import ProofStack, http_session, infra_settings, percentile

P95_TARGET = 1.0


def _signed(doc: dict[str, Any], payment_id: str, action: str) -> dict[str, Any]:
    secret = doc["secrets"]["mercadopago_webhook_secret"]
    request_id = str(uuid.uuid4())
    ts = str(int(time.time()))
    manifest = f"id:{payment_id};request-id:{request_id};ts:{ts};"
    v1 = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    return {
        "params": {"data.id": payment_id, "type": "payment", "source_news": "webhooks"},
        "json": {"type": "payment", "action": action, "data": {"id": payment_id}},
        "headers": {"x-request-id": request_id, "x-signature": f"ts={ts},v1={v1}"},
    }


LOAD_DAYS_AHEAD = 200
"""The load's classes: months ahead of every other class the proof books."""


def _seed(client: StackClient, count: int, tag: str) -> list[str]:
    db = client.db
    batch = db.batch()
    payments = []
    for n in range(count):
        booking_id = f"load-{tag}-{n:04d}"
        minute = n % 60
        hour = 8 + (n // 60) % 12
        day = LOAD_DAYS_AHEAD + (n // 720) % 28
        start = at(day, hour, minute).isoformat()
        batch.set(
            db.collection("bookings").document(booking_id),
            {
                "status": "awaiting_payment",
                "classTitle": "Carga",
                "teacher": {"name": "Ana Gómez", "email": f"docente{n % 50}@example.com"},
                "student": {"name": f"Alumno {n}", "email": f"carga{n}@example.com"},
                "start": start,
                "end": start.replace(f"{minute:02d}:00-03:00", f"{minute:02d}:30-03:00"),
                "timeZone": "America/Argentina/Buenos_Aires",
                "price": {"amount": 15000, "currency": "ARS"},
                "preferenceId": f"pref-{booking_id}",
            },
        )
        if (n + 1) % 400 == 0:
            batch.commit()
            batch = db.batch()
        payments.append(str(client.create_payment(booking_id)["id"]))
    batch.commit()
    return payments


class _Sampler(threading.Thread):
    """RSS of the serving process tree, sampled while a step runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak = max(self.peak, _rss(self.root))
            self.stop_event.wait(0.25)


def _rss(root: psutil.Process) -> int:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total = max(total, proc.memory_info().rss)
        except psutil.Error:
            continue
    return total


def _step(
    stack: ProofStack, client: StackClient, rate: float, seconds: float, tag: str
) -> dict[str, Any]:
    payments = _seed(client, max(1, round(rate * seconds / 2)), tag)
    interval = 2.0 / rate
    url = stack.url("payment_webhook")
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    local = threading.local()

    def send(due: float, payment_id: str, action: str) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = http_session(8)
        try:
            answer = session.post(url, timeout=60, **_signed(client.doc, payment_id, action))
            label = str(answer.status_code)
        except requests.RequestException as exc:
            label = type(exc).__name__
        elapsed = time.monotonic() - due
        with lock:
            latencies.append(elapsed)
            statuses[label] = statuses.get(label, 0) + 1

    process = stack.local.function_processes["payment_webhook"]
    sampler = _Sampler(process.pid)
    sampler.start()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=128)
    began = time.monotonic() + 0.2
    for n, payment_id in enumerate(payments):
        for offset, action in ((0.0, "payment.created"), (interval / 2, "payment.updated")):
            due = began + n * interval + offset
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(send, due, payment_id, action)
    pool.shutdown(wait=True)
    sampler.stop_event.set()
    sampler.join()
    wall = time.monotonic() - began
    return {
        "rate": rate,
        "notifications": len(latencies),
        "p50Ms": round(percentile(latencies, 0.5) * 1000),
        "p95Ms": round(percentile(latencies, 0.95) * 1000),
        "maxMs": round(max(latencies) * 1000),
        "statuses": statuses,
        "achievedPerSecond": round(len(latencies) / wall, 1),
        "peakRssMiB": round(sampler.peak / 2**20, 1),
    }


def run_load(
    stack: ProofStack, rates: list[float], step_seconds: float, latency_ms: int
) -> dict[str, Any]:
    client = stack.client()
    concurrency = int(infra_settings()["payment_webhook"]["concurrency"])
    threads = stack.local.function_env.get("payment_webhook", {}).get("THREADS")
    for emulator in ("calendar", "mercadopago"):
        client.set_faults(emulator, {"latencyMs": latency_ms})
    steps = []
    try:
        _step(stack, client, 2.0, 3.0, "warm")  # secrets, tokens, connections
        for rate in rates:
            row = _step(stack, client, rate, step_seconds, f"r{rate:g}")
            steps.append(row)
            ok = row["p95Ms"] < P95_TARGET * 1000 and set(row["statuses"]) == {"200"}
            row["ok"] = ok
            if not ok:
                break
            time.sleep(2.0)
    finally:
        for emulator in ("calendar", "mercadopago"):
            client.clear_faults(emulator)
    sustained = [row for row in steps if row["ok"]]
    process = psutil.Process(stack.local.function_processes["payment_webhook"].pid)
    peaks = []
    for proc in [process, *process.children(recursive=True)]:
        try:
            for line in open(f"/proc/{proc.pid}/status").read().splitlines():  # noqa: SIM115
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
        except OSError:
            continue
    best = sustained[-1] if sustained else None
    failures = [] if best else ["no rate tried kept p95 under 1 s with every answer 200"]
    return {
        "concurrency": concurrency,
        "threads": threads,
        "upstreamLatencyMs": latency_ms,
        "stepSeconds": step_seconds,
        "steps": steps,
        "sustainedPerSecond": best["rate"] if best else 0,
        "sustainedP95Ms": best["p95Ms"] if best else None,
        "rssMiB": round(_rss(process) / 2**20, 1),
        "peakRssMiB": round(max(peaks) / 2**20, 1) if peaks else None,
        "failures": failures,
    }
