"""What every part of the proof shares: its own stack, an HTTP session, a log of answers.

`ProofStack` starts a `LocalStack` with the functions as processes (so one can be killed),
each with the worker threads `infra/functions.json` deploys it with, and the Firestore
emulator behind a `FaultyProxy`. Its state directory (logs included) is wiped first, so the
secrets scan reads exactly what this run wrote. The proof process's own log (the emulators
run in it) goes to `proof-process.log` in the same directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from devstack.client import StackClient
from devstack.stack import ROOT, LocalStack
from proof.tcpproxy import FaultyProxy

PROOF_DIR = ROOT / ".local" / "proof"
INFRA = ROOT / "infra" / "functions.json"
MERCADO_PAGO_TIMEOUT = 22.0
"""How long Mercado Pago waits for the webhook's answer (and the emulator with it)."""


def infra_settings() -> dict[str, dict[str, Any]]:
    settings: dict[str, dict[str, Any]] = json.loads(INFRA.read_text())
    return settings


def deployed_threads() -> dict[str, dict[str, str]]:
    """`THREADS` (functions-framework's gunicorn threads) = each function's concurrency."""
    return {name: {"THREADS": str(fn["concurrency"])} for name, fn in infra_settings().items()}


def http_session(pool: int = 256) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool)
    session.mount("http://", adapter)
    return session


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Answer:
    """One HTTP answer a sender got from a function (status None: no answer at all)."""

    function: str
    kind: str
    status: int | None
    seconds: float | None
    error: str | None = None
    at: float = 0.0
    timeout: float = MERCADO_PAGO_TIMEOUT
    """How long this sender waits for an answer (Mercado Pago: 22 s; Google's push: 2 s)."""


@dataclass
class Answers:
    """Every answer of a run, thread-safe, with the figures the proof reports on them."""

    items: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self._lock:
            self.items.append(answer)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.items)

    def figures(
        self,
        ceiling: float = MERCADO_PAGO_TIMEOUT,
        windows: list[tuple[str, float, float]] | None = None,
    ) -> dict[str, Any]:
        """`windows` (label, from, to), in the answers' clock: the slow answers are counted
        by the window their request was sent in."""
        items = self.snapshot()
        by_function: dict[str, Counter[str]] = {}
        for a in items:
            by_function.setdefault(a.function, Counter())[_status_label(a)] += 1
        timed = [a.seconds for a in items if a.seconds is not None and a.status is not None]
        bad_5xx = [a for a in items if a.status is not None and a.status >= 500 and a.status != 503]
        no_answer = [a for a in items if a.status is None]
        too_slow = [
            a
            for a in items
            if (a.seconds is not None and a.seconds > ceiling)
            or (a.timeout >= ceiling and _is_timeout(a.error))
        ]
        sent_in: Counter[str] = Counter()
        sent_between: dict[str, list[float]] = {}
        for a in too_slow:
            sent = a.at - (a.seconds or 0.0)
            label = next(
                (name for name, start, end in windows or [] if start <= sent <= end),
                "outside every fault window",
            )
            sent_in[label] += 1
            span = sent_between.setdefault(label, [sent, sent])
            span[0], span[1] = min(span[0], sent), max(span[1], sent)
        return {
            "total": len(items),
            "slowBySendingWindow": dict(sent_in),
            "slowSentBetween": {
                k: [round(v[0], 1), round(v[1], 1)] for k, v in sent_between.items()
            },
            "byFunction": {fn: dict(sorted(c.items())) for fn, c in sorted(by_function.items())},
            "unexpected5xx": len(bad_5xx),
            "unexpected5xxSamples": [asdict(a) for a in bad_5xx[:10]],
            "noAnswer": len(no_answer),
            "noAnswerByCause": dict(Counter(_cause(a) for a in no_answer)),
            "slowerThanCeiling": len(too_slow),
            "slowSamples": [asdict(a) for a in too_slow[:10]],
            "ceilingSeconds": ceiling,
            "maxSeconds": round(max(timed), 2) if timed else 0.0,
            "p95Seconds": round(percentile(timed, 0.95), 3),
            "p50Seconds": round(percentile(timed, 0.5), 3),
        }


def _status_label(answer: Answer) -> str:
    if answer.status is not None:
        return str(answer.status)
    return f"no answer in {answer.timeout:.0f} s" if _is_timeout(answer.error) else "no answer"


def _is_timeout(error: str | None) -> bool:
    return bool(error) and ("timeout" in str(error).lower() or "timed out" in str(error).lower())


def _cause(answer: Answer) -> str:
    if _is_timeout(answer.error):
        return f"{answer.function}: no answer within the sender's {answer.timeout:.0f} s"
    text = str(answer.error or "")
    if "refused" in text.lower():
        return f"{answer.function}: connection refused (instance down)"
    if "reset" in text.lower() or "aborted" in text.lower() or "disconnected" in text.lower():
        return f"{answer.function}: connection closed without an answer"
    return f"{answer.function}: {text.split(':')[0] or 'unknown'}"


class ProofStack:
    """A local stack of its own for the proof, with the fault-injection hooks it needs."""

    def __init__(self, state_dir: Path = PROOF_DIR / "stack") -> None:
        self.state_dir = state_dir
        self.proxy = FaultyProxy()
        self.local = LocalStack(
            functions_in_process=False,
            state_dir=state_dir,
            firestore_front=self.proxy.start,
            function_env=deployed_threads(),
        )
        self.document: dict[str, Any] = {}
        self._log_handler: logging.Handler | None = None
        self.started_seconds = 0.0

    def start(self) -> ProofStack:
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True)
        handler = logging.FileHandler(self.state_dir / "proof-process.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        self._log_handler = handler
        began = time.monotonic()
        self.document = self.local.start()
        self.started_seconds = time.monotonic() - began
        return self

    def client(self) -> StackClient:
        return StackClient(self.document)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.document["secrets"]["admin_api_key"]}

    def url(self, function: str) -> str:
        url: str = self.document["functions"][function]
        return url

    def log_files(self) -> list[Path]:
        return sorted(p for p in self.state_dir.glob("*.log") if p.is_file())

    def stop(self) -> None:
        try:
            self.local.stop()
        finally:
            self.proxy.stop()
            if self._log_handler is not None:
                logging.getLogger().removeHandler(self._log_handler)
                self._log_handler.close()
                self._log_handler = None

    def __enter__(self) -> ProofStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cores() -> int:
    return os.cpu_count() or 1
