"""Part 1, chaos: paid bookings and group seats through the functions' HTTP endpoints while
everything around them fails, then one reconcile run, then the books are checked.

What is done (the full plan; `SHORT` is the same with fewer bookings and shorter faults):

- 200 one-to-one bookings and 5 group sessions of 10 seats. Sessions are created through
  `class_sessions` (admin API key), retried like an admin would until a 2xx; bookings and
  payments are seeded as the platform and Mercado Pago make them.
- Each payment is delivered 3-5 times at once through the Mercado Pago emulator's notify
  route: `payment.created` and `payment.updated` (signed), the IPN beside them (the stack
  accepts it), the rest drawn among the three. Every non-2xx (or no answer) is delivered
  again with growing delays, as Mercado Pago does, until a 2xx.
- Calendar: 30% of calls fail (500, 503, 429, 403 rateLimitExceeded and commit-then-drop,
  6% each). Firestore: every connection reset, then all traffic held for 12 s through the
  proxy (`proof/tcpproxy.py`). Secret Manager: down (503) for a minute, during which the
  `payment_webhook` instance is killed with SIGKILL and started again (cold, so it needs
  its secrets). 10% of the payments are refunded through Mercado Pago's refunds API at
  random moments, a third of them within 0.4 s of their first delivery (while the event
  is being created); the emulator notifies the refund by itself, and any non-2xx of that
  notification is delivered again too.
- Faults cleared, one `reconcile` run (admin API key), then every booking, claim and event
  is read back.

Figures: events per booking and per session, attendees per session against the paid and
unrefunded seats plus the teacher, bookings lost (payment never applied) or stuck (not in
their expected final state), confirmed events of refunded bookings, and every answer by
status with the slowest.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from devstack.client import StackClient
from devstack.when import iso
from proof.harness import Answer, Answers, ProofStack, http_session

TEACHERS = [("Ana Gómez", "ana.gomez@example.com"), ("Bruno Díaz", "bruno.diaz@example.com")]
PRICE = {"amount": 15000, "currency": "ARS"}
PUSH_TIMEOUT = 2.0
"""The Calendar emulator's push sender waits this long for calendar_notifications."""
FIRST_CLASS_DAY = 41
"""Days from today to the first one-to-one class; then 12 a day (08:00 to 19:00), day by day."""
FIRST_SESSION_DAY = 100
"""Days from today to the first group session (one a day at 18:00), after every one-to-one."""
CALENDAR_FAULTS: list[dict[str, Any]] = [
    {"status": 500, "reason": "backendError"},
    {"status": 503, "reason": "backendError"},
    {"status": 429, "reason": "rateLimitExceeded"},
    {"status": 403, "reason": "rateLimitExceeded"},
    {"dropResponse": True},
]


@dataclass(frozen=True)
class ChaosPlan:
    one_to_one: int
    sessions: int
    seats: int
    refund_fraction: float
    arrival_seconds: float
    """Between two payments' first deliveries."""
    firestore_at: float
    firestore_hold: float
    secrets_at: float
    secrets_for: float
    kill_at: float
    refund_within: float
    """Refunds happen within this many seconds of their payment's first delivery."""
    redeliver_first: float
    redeliver_max: float
    give_up_after: float
    calendar_failure_rate: float = 0.30
    kill_function: str = "payment_webhook"
    seed: int = 14


FULL = ChaosPlan(
    one_to_one=200,
    sessions=5,
    seats=10,
    refund_fraction=0.10,
    arrival_seconds=0.5,
    firestore_at=20.0,
    firestore_hold=12.0,
    secrets_at=45.0,
    secrets_for=60.0,
    kill_at=50.0,
    refund_within=40.0,
    redeliver_first=2.0,
    redeliver_max=20.0,
    give_up_after=900.0,
)
SHORT = replace(
    FULL,
    one_to_one=6,
    sessions=1,
    seats=4,
    refund_fraction=0.2,
    arrival_seconds=1.0,
    firestore_at=0.5,
    secrets_at=8.0,
    secrets_for=12.0,
    kill_at=9.0,
    refund_within=8.0,
    redeliver_first=0.5,
    redeliver_max=2.0,
    give_up_after=180.0,
)


@dataclass
class Paid:
    """One payment of the run and what became of it on the sender's side."""

    booking_id: str
    payment_id: str
    student: str
    session_id: str | None = None
    refund_delay: float | None = None
    refunded: bool = False
    refund_while_creating: bool = False
    refund_error: str | None = None
    inflight: int = 0
    accepted: bool = False
    gave_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Session:
    session_id: str
    teacher_email: str
    start: str
    end: str
    created: bool = False


class FaultCounter:
    """Counts what an in-process emulator's fault plan actually injected."""

    def __init__(self, plan: Any) -> None:
        self.hits: Counter[str] = Counter()
        self.plan = plan
        original: Callable[[str, str], Any] = plan.pick
        self._original = original

        def pick(method: str, path: str) -> Any:
            rule = original(method, path)
            if rule is not None:
                label = "dropResponse" if rule.drop_response else f"{rule.status} {rule.reason}"
                self.hits[label.strip()] += 1
            return rule

        plan.pick = pick

    def restore(self) -> None:
        self.plan.pick = self._original


def calendar_fault_plan(rate: float) -> dict[str, Any]:
    """Rules tried in order, each at the chance that makes every kind `rate / kinds` overall."""
    share = rate / len(CALENDAR_FAULTS)
    rules = []
    for index, fault in enumerate(CALENDAR_FAULTS):
        rules.append({**fault, "rate": share / (1 - share * index)})
    return {"rules": rules}


class Chaos:
    def __init__(self, stack: ProofStack, plan: ChaosPlan) -> None:
        self.stack = stack
        self.plan = plan
        self.client: StackClient = stack.client()
        self.http = http_session()
        self.answers = Answers()
        self.rng = random.Random(plan.seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.payments: list[Paid] = []
        self.sessions: list[Session] = []
        self._marks: list[tuple[float, str]] = []
        self.t0 = 0.0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=256)
        self._futures: list[concurrent.futures.Future[Any]] = []
        self._futures_lock = threading.Lock()
        self._access_token = ""
        self.restart_seconds: float | None = None
        self.reconcile_answer: dict[str, Any] = {}

    # -- helpers -----------------------------------------------------------------------
    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _mark(self, what: str) -> None:
        self._marks.append((time.monotonic(), what))

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        future = self._pool.submit(fn, *args)
        with self._futures_lock:
            self._futures.append(future)

    def _wait_all(self) -> None:
        while True:
            with self._futures_lock:
                pending = [f for f in self._futures if not f.done()]
            if not pending:
                break
            concurrent.futures.wait(pending)
        with self._futures_lock:
            for future in self._futures:
                future.result()  # a bug in the driver must not pass silently
            self._futures.clear()

    def _emulator_base(self, name: str) -> str:
        return str(self.client.doc["emulators"][name]).split("/calendar/v3/")[0]

    # -- seeding -----------------------------------------------------------------------
    def create_sessions(self) -> None:
        for k in range(self.plan.sessions):
            name, email = TEACHERS[k % len(TEACHERS)]
            session = Session(
                session_id=f"proof-{self.run_id}-ses{k}",
                teacher_email=email,
                start=iso(FIRST_SESSION_DAY + k, 18),
                end=iso(FIRST_SESSION_DAY + k, 19, 30),
            )
            body = {
                "sessionId": session.session_id,
                "title": f"Guitarra en grupo {k}",
                "teacher": {"name": name, "email": email},
                "start": session.start,
                "end": session.end,
                "capacity": self.plan.seats,
                "price": PRICE,
            }
            delay = 0.5
            while not session.created:
                started = time.monotonic()
                try:
                    response = self.http.post(
                        self.stack.url("class_sessions"),
                        json=body,
                        headers=self.stack.admin_headers,
                        timeout=60,
                    )
                    status: int | None = response.status_code
                    error = None
                except requests.RequestException as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"
                self.answers.add(
                    Answer("class_sessions", "create", status, time.monotonic() - started, error)
                )
                session.created = status is not None and 200 <= status < 300
                if not session.created:
                    time.sleep(delay)
                    delay = min(delay * 2, 8)
            self.sessions.append(session)

    def seed_payments(self) -> None:
        db = self.client.db
        batch = db.batch()
        pending = 0
        entries: list[tuple[str, dict[str, Any], str | None]] = []
        fields: dict[str, Any]
        for n in range(self.plan.one_to_one):
            name, email = TEACHERS[n % len(TEACHERS)]
            hour = 8 + n % 12
            day = FIRST_CLASS_DAY + n // 12
            booking_id = f"proof-{self.run_id}-b{n:03d}"
            fields = {
                "teacher": {"name": name, "email": email},
                "student": {"name": f"Alumno {n}", "email": f"alumno{n}@example.com"},
                "start": iso(day, hour),
                "end": iso(day, hour, 50),
            }
            entries.append((booking_id, fields, None))
        for k, session in enumerate(self.sessions):
            for j in range(self.plan.seats):
                booking_id = f"{session.session_id}-seat{j}"
                fields = {
                    "sessionId": session.session_id,
                    "teacher": {
                        "name": TEACHERS[k % len(TEACHERS)][0],
                        "email": session.teacher_email,
                    },
                    "student": {"name": f"Estudiante {k}-{j}", "email": f"est{k}-{j}@example.com"},
                    "start": session.start,
                    "end": session.end,
                }
                entries.append((booking_id, fields, session.session_id))
        for booking_id, fields, session_id in entries:
            doc = _booking_document(booking_id, fields)
            batch.set(db.collection("bookings").document(booking_id), doc)
            pending += 1
            if pending == 400:
                batch.commit()
                batch, pending = db.batch(), 0
            payment = self.client.create_payment(booking_id, transaction_amount=PRICE["amount"])
            self.payments.append(
                Paid(
                    booking_id=booking_id,
                    payment_id=str(payment["id"]),
                    student=str(fields["student"]["email"]),
                    session_id=session_id,
                )
            )
        if pending:
            batch.commit()
        self.rng.shuffle(self.payments)
        self._choose_refunds()

    def _choose_refunds(self) -> None:
        for group in (
            [p for p in self.payments if p.session_id is None],
            [p for p in self.payments if p.session_id is not None],
        ):
            if not group:
                continue
            count = max(1, round(len(group) * self.plan.refund_fraction))
            for index, paid in enumerate(self.rng.sample(group, count)):
                if index % 3 == 0:  # while its event is being created
                    paid.refund_delay = self.rng.uniform(0.02, 0.4)
                else:
                    paid.refund_delay = self.rng.uniform(0.4, self.plan.refund_within)

    # -- Mercado Pago's side -------------------------------------------------------------
    def _notify(self, paid: Paid, kind: str) -> tuple[int | None, str | None, float]:
        options: dict[str, Any] = {
            "url": self.client.webhook_url(),
            "secret": self.client.doc["secrets"]["mercadopago_webhook_secret"],
        }
        if kind == "ipn":
            options["format"] = "ipn"
        else:
            options["action"] = kind
        started = time.monotonic()
        url = (
            f"{self.client.doc['emulators']['mercadopago']}"
            f"/_emulator/mercadopago/payments/{paid.payment_id}/notify"
        )
        result = self.http.post(url, json=options, timeout=120).json()
        seconds = time.monotonic() - started
        return result.get("status"), result.get("error"), seconds

    def deliver(self, paid: Paid, kind: str, label: str | None = None) -> None:
        """One notification, delivered until the webhook answers 2xx (or the run gives up)."""
        first = time.monotonic()
        delay = self.plan.redeliver_first
        while True:
            with paid.lock:
                paid.inflight += 1
            try:
                status, error, seconds = self._notify(paid, kind)
            finally:
                with paid.lock:
                    paid.inflight -= 1
            self.answers.add(
                Answer("payment_webhook", label or kind, status, seconds, error, self._now())
            )
            if status is not None and 200 <= status < 300:
                with paid.lock:
                    paid.accepted = True
                return
            if time.monotonic() - first > self.plan.give_up_after:
                with paid.lock:
                    paid.gave_up += 1
                return
            time.sleep(delay * self.rng.uniform(0.8, 1.2))
            delay = min(delay * 2, self.plan.redeliver_max)
            label = "redelivery"

    def pay(self, paid: Paid) -> None:
        kinds = ["payment.created", "payment.updated", "ipn"]
        extra = self.rng.randint(3, 5) - len(kinds)
        kinds += [self.rng.choice(kinds[:3]) for _ in range(extra)]
        for kind in kinds:
            self._submit(self.deliver, paid, kind)
        if paid.refund_delay is not None:
            self._submit(self.refund, paid)

    def refund(self, paid: Paid) -> None:
        assert paid.refund_delay is not None
        time.sleep(paid.refund_delay)
        with paid.lock:
            paid.refund_while_creating = paid.inflight > 0 and not paid.accepted
        key = str(uuid.uuid4())
        url = f"{self.client.doc['emulators']['mercadopago']}/v1/payments/{paid.payment_id}/refunds"
        headers = {"Authorization": f"Bearer {self._access_token}", "X-Idempotency-Key": key}
        for _ in range(5):
            try:
                response = self.http.post(url, json={}, headers=headers, timeout=30)
            except requests.RequestException as exc:
                paid.refund_error = f"{type(exc).__name__}: {exc}"
                time.sleep(1)
                continue
            paid.refunded = response.status_code == 201
            paid.refund_error = None if paid.refunded else response.text[:200]
            return

    def follow_automatic_deliveries(self, stop: threading.Event) -> None:
        """The refund notifications the emulator sends by itself: any non-2xx is sent again."""
        seen = 0
        by_id = {p.payment_id: p for p in self.payments}
        url = f"{self.client.doc['emulators']['mercadopago']}/_emulator/mercadopago/deliveries"
        while True:
            log = self.http.get(url, timeout=30).json()
            for entry in log["deliveries"][seen:]:
                status = entry.get("status")
                self.answers.add(
                    Answer(
                        "payment_webhook", "refund (automatic)", status, None, entry.get("error")
                    )
                )
                paid = by_id.get(str(entry.get("paymentId")))
                if paid is not None and not (status is not None and 200 <= status < 300):
                    self._submit(self.deliver, paid, "payment.updated", "redelivery")
            seen = len(log["deliveries"])
            if stop.is_set() and log["pending"] == 0:
                return
            time.sleep(0.5)

    # -- the faults ----------------------------------------------------------------------
    def faults_timeline(self) -> None:
        plan = self.plan
        actions: list[tuple[float, Callable[[], None]]] = [
            (plan.firestore_at, self._break_firestore),
            (plan.secrets_at, self._secrets_down),
            (plan.kill_at, self._kill),
            (plan.secrets_at + plan.secrets_for, self._secrets_up),
        ]
        threads = []
        for at, action in sorted(actions, key=lambda a: a[0]):
            time.sleep(max(0.0, at - self._now()))
            thread = threading.Thread(target=action, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    def _break_firestore(self) -> None:
        count = self.stack.proxy.reset()
        self._mark(f"Firestore: {count} connections reset; all traffic held")
        self.stack.proxy.hold(self.plan.firestore_hold)
        self._mark(f"Firestore: released after {self.plan.firestore_hold:.0f} s")

    def _secrets_down(self) -> None:
        self.client.set_faults("secretmanager", {"rules": [{"status": 503}]})
        self._mark("Secret Manager: down (503 on every call)")

    def _secrets_up(self) -> None:
        self.client.clear_faults("secretmanager")
        self._mark("Secret Manager: back")

    def _kill(self) -> None:
        self._mark(f"{self.plan.kill_function}: SIGKILL")
        self.restart_seconds = self.stack.local.restart_function(self.plan.kill_function)
        self._mark(f"{self.plan.kill_function}: answering again ({self.restart_seconds:.1f} s)")

    # -- the run -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        plan = self.plan
        assert self.stack.local.emulators is not None
        self._access_token = self.client.mercadopago_access_token()
        if_match = calendar_honours_if_match(self.client)
        for emulator in ("calendar", "mercadopago", "secretmanager"):
            self.client.reset_stats(emulator)
        calendar_faults = FaultCounter(self.stack.local.emulators.calendar.app.faults)
        secret_faults = FaultCounter(self.stack.local.emulators.secretmanager.app.faults)
        began = time.monotonic()
        self.t0 = began
        self.client.set_faults("calendar", calendar_fault_plan(plan.calendar_failure_rate))
        self._mark(f"Calendar: {plan.calendar_failure_rate:.0%} of calls failing")
        self.create_sessions()
        self._mark(f"{len(self.sessions)} sessions created")
        self.seed_payments()
        self._mark(f"{len(self.payments)} bookings and payments seeded")
        self.t0 = time.monotonic()  # fault times count from the first delivery
        stop_following = threading.Event()
        follower = threading.Thread(
            target=self.follow_automatic_deliveries, args=(stop_following,), daemon=True
        )
        follower.start()
        faults = threading.Thread(target=self.faults_timeline, daemon=True)
        faults.start()
        for paid in self.payments:
            self.pay(paid)
            time.sleep(plan.arrival_seconds)
        self._mark("last payment's first deliveries sent")
        faults.join()
        self._wait_all()
        self._mark("every delivery answered 2xx (or given up)")
        stop_following.set()
        follower.join()
        self._wait_all()  # redeliveries of the last automatic notifications
        self.client.clear_faults("calendar")
        self._mark("Calendar faults cleared")
        calendar_calls = sum(self.client.stats("calendar").values())
        calendar_faults.restore()
        secret_faults.restore()
        self.reconcile()
        self._mark("reconcile answered")
        self._settle_pushes()
        figures = self.verify()
        figures["answers"] = self._answers_with_pushes()
        figures["handlerLog"] = handler_log(self.stack, "payment_webhook")
        figures["faults"] = {
            "calendarCalls": calendar_calls,
            "calendarFaultsInjected": dict(calendar_faults.hits),
            "calendarFaultShare": round(sum(calendar_faults.hits.values()) / calendar_calls, 3)
            if calendar_calls
            else 0.0,
            "firestoreProxy": {
                "connectionsAccepted": self.stack.proxy.stats.accepted,
                "connectionsReset": self.stack.proxy.stats.reset,
                "connectionsHeld": self.stack.proxy.stats.held,
                "holdSeconds": self.stack.proxy.stats.holds,
            },
            "secretManagerCallsRefused": sum(secret_faults.hits.values()),
            "killed": plan.kill_function,
            "restartSeconds": round(self.restart_seconds or 0.0, 2),
        }
        figures["calendarHonoursIfMatch"] = if_match
        figures["timeline"] = [(round(at - self.t0, 1), what) for at, what in self._marks]
        figures["reconcile"] = self.reconcile_answer
        figures["seconds"] = round(time.monotonic() - began, 1)
        figures["plan"] = {
            "oneToOne": plan.one_to_one,
            "sessions": plan.sessions,
            "seatsPerSession": plan.seats,
            "refundFraction": plan.refund_fraction,
            "arrivalSeconds": plan.arrival_seconds,
            "calendarFailureRate": plan.calendar_failure_rate,
            "firestoreHoldSeconds": plan.firestore_hold,
            "secretManagerDownSeconds": plan.secrets_for,
        }
        self._pool.shutdown()
        return figures

    def reconcile(self) -> None:
        started = time.monotonic()
        try:
            response = self.http.post(
                self.stack.url("reconcile"), headers=self.stack.admin_headers, timeout=120
            )
            status: int | None = response.status_code
            error = None
            body: dict[str, Any] = (
                response.json() if status == 200 else {"body": response.text[:300]}
            )
        except requests.RequestException as exc:
            status, error, body = None, f"{type(exc).__name__}: {exc}", {}
        self.answers.add(Answer("reconcile", "run", status, time.monotonic() - started, error))
        self.reconcile_answer = {
            "status": status,
            "counts": body.get("counts"),
            "remaining": body.get("remaining"),
            "outcomes": dict(Counter(str(b.get("outcome")) for b in body.get("bookings", []))),
        }

    def _settle_pushes(self) -> None:
        base = self._emulator_base("calendar")
        for _ in range(3):
            self.http.get(f"{base}/_emulator/calendar/deliveries?wait=1", timeout=30)
            time.sleep(0.5)

    def _answers_with_pushes(self) -> dict[str, Any]:
        base = self._emulator_base("calendar")
        log = self.http.get(f"{base}/_emulator/calendar/deliveries", timeout=30).json()
        for entry in log:
            self.answers.add(
                Answer(
                    "calendar_notifications",
                    "push",
                    entry.get("status"),
                    None,
                    entry.get("error"),
                    timeout=PUSH_TIMEOUT,
                )
            )
        plan = self.plan
        windows = [
            (
                "Firestore held (+ budget)",
                plan.firestore_at,
                plan.firestore_at + plan.firestore_hold + 10,
            ),
            (
                "Secret Manager down (+ budget)",
                plan.secrets_at,
                plan.secrets_at + plan.secrets_for + 10,
            ),
        ]
        return self.answers.figures(windows=windows)

    # -- the books -----------------------------------------------------------------------
    def verify(self) -> dict[str, Any]:
        events = all_events(self.client)
        by_booking: dict[str, list[dict[str, Any]]] = {}
        by_session: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            private = (event.get("extendedProperties") or {}).get("private") or {}
            if "bookingId" in private:
                by_booking.setdefault(private["bookingId"], []).append(event)
            if "sessionId" in private:
                by_session.setdefault(private["sessionId"], []).append(event)
        bookings = {
            snap.id: snap.to_dict() or {}
            for snap in self.client.db.get_all(
                [
                    self.client.db.collection("bookings").document(p.booking_id)
                    for p in self.payments
                ]
            )
        }
        claims = {
            snap.id: (snap.to_dict() or {}).get("bookingId")
            for snap in self.client.db.get_all(
                [
                    self.client.db.collection("payment_claims").document(p.payment_id)
                    for p in self.payments
                ]
            )
            if snap.exists
        }
        problems: list[str] = []
        lost: list[str] = []
        stuck: list[str] = []
        per_booking: Counter[str] = Counter()
        refunded_confirmed = 0
        for paid in self.payments:
            doc = bookings.get(paid.booking_id, {})
            status = doc.get("status")
            if status == "awaiting_payment":
                lost.append(paid.booking_id)
            if paid.session_id is not None:
                expected = "refunded" if paid.refunded else "scheduled"
                if status != expected:
                    stuck.append(f"{paid.booking_id}: {status} (expected {expected})")
                continue
            evs = by_booking.get(paid.booking_id, [])
            confirmed = [e for e in evs if e.get("status") != "cancelled"]
            label = "refunded" if paid.refunded else "paid"
            per_booking[f"{label}: {len(evs)} event(s), {len(confirmed)} confirmed"] += 1
            if paid.refunded:
                refunded_confirmed += len(confirmed)
                if status != "refunded":
                    stuck.append(f"{paid.booking_id}: {status} (expected refunded)")
                if len(evs) > 1:
                    problems.append(f"{paid.booking_id}: {len(evs)} events")
                continue
            finished = status == "scheduled" and doc.get("calendarStatus") == "confirmed"
            if not finished and status != "awaiting_payment":
                stuck.append(
                    f"{paid.booking_id}: {status}/{doc.get('calendarStatus')} "
                    "(expected scheduled/confirmed)"
                )
            if len(evs) != 1:
                problems.append(f"{paid.booking_id}: {len(evs)} events")
            elif doc.get("meetLink") != evs[0].get("hangoutLink"):
                problems.append(f"{paid.booking_id}: the booking's Meet link is not the event's")
            elif {a.get("email") for a in evs[0].get("attendees", [])} != {
                doc.get("teacher", {}).get("email"),
                paid.student,
            }:
                problems.append(f"{paid.booking_id}: attendees are not teacher + student")
        sessions_figures: list[dict[str, Any]] = []
        per_session: Counter[int] = Counter()
        attendees_wrong = 0
        refunded_seats_attending = 0
        for session in self.sessions:
            evs = by_session.get(session.session_id, [])
            per_session[len(evs)] += 1
            wanted = {session.teacher_email} | {
                p.student
                for p in self.payments
                if p.session_id == session.session_id and not p.refunded
            }
            refunded = {
                p.student
                for p in self.payments
                if p.session_id == session.session_id and p.refunded
            }
            actual = {str(a.get("email")) for a in (evs[0].get("attendees", []) if evs else [])}
            missing, extra = sorted(wanted - actual), sorted(actual - wanted)
            refunded_seats_attending += len(actual & refunded)
            if missing or extra:
                attendees_wrong += 1
            sessions_figures.append(
                {
                    "sessionId": session.session_id,
                    "events": len(evs),
                    "expectedAttendees": len(wanted),
                    "attendees": len(actual),
                    "missing": missing,
                    "extra": extra,
                }
            )
        wrong_claims = [
            p.payment_id
            for p in self.payments
            if claims.get(p.payment_id) not in (None, p.booking_id)
        ]
        refunds = [p for p in self.payments if p.refund_delay is not None]
        return {
            "bookings": {
                "oneToOne": sum(1 for p in self.payments if p.session_id is None),
                "seats": sum(1 for p in self.payments if p.session_id is not None),
            },
            "eventsPerBooking": dict(sorted(per_booking.items())),
            "eventsPerSession": {str(k): v for k, v in sorted(per_session.items())},
            "sessions": sessions_figures,
            "sessionsWithWrongAttendees": attendees_wrong,
            "refundedSeatsStillInvited": refunded_seats_attending,
            "lost": len(lost),
            "lostSamples": lost[:10],
            "stuck": len(stuck),
            "stuckSamples": stuck[:10],
            "confirmedEventsOfRefundedBookings": refunded_confirmed,
            "bookingProblems": len(problems),
            "bookingProblemSamples": problems[:10],
            "paymentsClaimedByAnotherBooking": len(wrong_claims),
            "refunds": {
                "planned": len(refunds),
                "made": sum(1 for p in refunds if p.refunded),
                "whileEventBeingCreated": sum(1 for p in refunds if p.refund_while_creating),
                "refused": [p.refund_error for p in refunds if not p.refunded][:5],
            },
            "deliveriesGivenUp": sum(p.gave_up for p in self.payments),
            "paymentIssues": payment_issue_kinds(self.client),
        }


def handler_log(stack: ProofStack, function: str) -> dict[str, Any]:
    """What the function's own log lines say: outcomes and how long the failures took."""
    outcomes: Counter[str] = Counter()
    failed_ms: list[int] = []
    crashed = 0
    for line in (stack.state_dir / f"{function}.log").read_text(errors="replace").splitlines():
        if "Traceback" in line:
            crashed += 1
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        outcomes[str(entry.get("outcome"))] += 1
        if entry.get("outcome") == "upstream_unavailable" and entry.get("duration_ms") is not None:
            failed_ms.append(int(entry["duration_ms"]))
    failed_ms.sort()
    return {
        "outcomes": dict(outcomes.most_common()),
        "tracebacks": crashed,
        "upstreamUnavailableMedianMs": failed_ms[len(failed_ms) // 2] if failed_ms else None,
        "upstreamUnavailableMaxMs": failed_ms[-1] if failed_ms else None,
    }


def _booking_document(booking_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "awaiting_payment",
        "classId": "proof",
        "classTitle": "Clase de prueba",
        "timeZone": "America/Argentina/Buenos_Aires",
        "price": PRICE,
        "preferenceId": f"pref-{booking_id}",
        **fields,
    }


def all_events(client: StackClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    page_token = None
    while True:
        page = (
            client.calendar.events()
            .list(
                calendarId=client.doc["calendar_id"],
                showDeleted=True,
                maxResults=2500,
                pageToken=page_token,
            )
            .execute()
        )
        events.extend(page.get("items", []))
        page_token = page.get("nextPageToken")
        if not page_token:
            return events


def payment_issue_kinds(client: StackClient) -> dict[str, int]:
    kinds: Counter[str] = Counter(
        str((snap.to_dict() or {}).get("kind"))
        for snap in client.db.collection("payment_issues").stream()
    )
    return dict(sorted(kinds.items()))


def calendar_honours_if_match(client: StackClient) -> bool:
    """Whether the Calendar emulator refuses a patch whose `If-Match` is stale (Google does:
    412). Group seats rely on it: without it, two seats joining at once can lose one."""
    calendar_id = "proof-if-match-probe@demo-virtual-classes.local"
    service = client.calendar.events()
    event = service.insert(
        calendarId=calendar_id,
        body={
            "summary": "probe",
            "start": {"dateTime": iso(FIRST_CLASS_DAY, 10)},
            "end": {"dateTime": iso(FIRST_CLASS_DAY, 11)},
        },
    ).execute()
    request = service.patch(calendarId=calendar_id, eventId=event["id"], body={"summary": "x"})
    request.headers["If-Match"] = '"stale-etag"'
    try:
        request.execute()
    except Exception as exc:  # googleapiclient.errors.HttpError
        return getattr(getattr(exc, "resp", None), "status", None) == 412
    finally:
        service.delete(calendarId=calendar_id, eventId=event["id"]).execute()
    return False


def check(figures: dict[str, Any]) -> list[str]:
    """What the figures promise; each broken promise is one line."""
    failures = []
    if figures["lost"]:
        failures.append(f"{figures['lost']} booking(s) lost (payment never applied)")
    if figures["stuck"]:
        failures.append(f"{figures['stuck']} booking(s) stuck: {figures['stuckSamples'][:3]}")
    if figures["bookingProblems"]:
        failures.append(f"one-to-one bookings: {figures['bookingProblemSamples'][:3]}")
    if set(figures["eventsPerSession"]) != {"1"}:
        failures.append(f"events per session: {figures['eventsPerSession']}")
    if figures["sessionsWithWrongAttendees"]:
        wrong = [s for s in figures["sessions"] if s["missing"] or s["extra"]]
        failures.append(
            f"{len(wrong)} session(s) with wrong attendees: "
            + "; ".join(
                f"{s['sessionId']} missing {s['missing']} extra {s['extra']}" for s in wrong
            )
        )
    if figures["confirmedEventsOfRefundedBookings"]:
        failures.append(
            f"{figures['confirmedEventsOfRefundedBookings']} confirmed event(s) "
            "of refunded bookings"
        )
    if figures["paymentsClaimedByAnotherBooking"]:
        failures.append("a payment claimed by another booking")
    answers = figures["answers"]
    if answers["unexpected5xx"]:
        failures.append(f"{answers['unexpected5xx']} 5xx answer(s) other than 503")
    if answers["slowerThanCeiling"]:
        failures.append(
            f"{answers['slowerThanCeiling']} answer(s) slower than 22 s (or none), by when they "
            f"were sent: {answers['slowBySendingWindow']}"
        )
    return failures


def run_chaos(stack: ProofStack, plan: ChaosPlan) -> dict[str, Any]:
    figures = Chaos(stack, plan).run()
    figures["failures"] = check(figures)
    return figures
