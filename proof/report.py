"""docs/proof.md from the parts' figures (kept beside it, as JSON, for the parts not re-run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PARTS = ("chaos", "fuzz", "secrets", "load", "bench")
TITLES = {
    "chaos": "1. Chaos: exactly once while everything fails",
    "fuzz": "2. Fuzz: no 5xx from generated and hostile input",
    "secrets": "3. Secrets: none in logs or documents",
    "load": "4. Load: one payment_webhook instance",
    "bench": "5. Benchmarks and cold start",
}


def _status(part: dict[str, Any]) -> str:
    return "**PASS**" if not part["figures"].get("failures") else "**FAIL**"


def headline(name: str, fig: dict[str, Any]) -> str:
    if name == "chaos":
        ans = fig["answers"]
        return (
            f"{fig['bookings']['oneToOne']} bookings + {fig['bookings']['seats']} seats: "
            f"{fig['lost']} lost, {fig['stuck']} stuck, "
            f"{fig['bookingProblems']} one-to-one problems, "
            f"{fig['sessionsWithWrongAttendees']} session(s) with wrong attendees, "
            f"{fig['confirmedEventsOfRefundedBookings']} confirmed events of refunded bookings; "
            f"{ans['unexpected5xx']} 5xx but 503, {ans['slowerThanCeiling']} answers over 22 s"
        )
    if name == "fuzz":
        total = sum(fig["generatedPerFunction"].values()) + fig["hostileCases"]
        fivexx = sum(fig["fivexxPerFunction"].values())
        return (
            f"{total} requests ({min(fig['generatedPerFunction'].values())}+ generated per "
            f"function, {fig['hostileCases']} hostile): {fivexx} 5xx but 503, "
            f"{sum(fig['unavailablePerFunction'].values())} 503"
        )
    if name == "secrets":
        return (
            f"{fig['matches']} matches in {fig['logLines']} log lines and "
            f"{fig['documents']} documents ({fig['secretsSearched']} secret values, "
            f"{len(fig['tokenShapes'])} token shapes)"
        )
    if name == "load":
        return (
            f"{fig['sustainedPerSecond']} notifications/s at p95 {fig['sustainedP95Ms']} ms "
            f"(concurrency {fig['concurrency']}, upstreams {fig['upstreamLatencyMs']} ms); "
            f"RSS {fig['rssMiB']} MiB, peak {fig['peakRssMiB']} MiB"
        )
    ratios = [row["ratio"] for row in fig["coldStart"]["functions"].values()]
    return (
        f"cold start {min(ratios)}-{max(ratios)}x the bare imports; "
        f"{len(fig.get('bench', {}).get('scripts', {}))} bench scripts"
    )


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def _chaos(fig: dict[str, Any]) -> list[str]:
    plan, faults, ans = fig["plan"], fig["faults"], fig["answers"]
    lines = [
        f"{plan['oneToOne']} one-to-one bookings and {plan['sessions']} group sessions of "
        f"{plan['seatsPerSession']} seats, a payment every {plan['arrivalSeconds']} s, each "
        "delivered 3-5 times at once (`payment.created`, `payment.updated`, IPN) and again "
        "after every non-2xx; "
        f"{fig['refunds']['made']} refunded ({fig['refunds']['whileEventBeingCreated']} while "
        "a delivery was still creating the event). "
        f"Run time {fig['seconds']} s.",
        "",
        "Faults injected (counted where they happened):",
        "",
        f"- Calendar: {faults['calendarCalls']} calls, "
        f"{sum(faults['calendarFaultsInjected'].values())} failed "
        f"({faults['calendarFaultShare']:.0%}): "
        + ", ".join(f"{k} x{v}" for k, v in sorted(faults["calendarFaultsInjected"].items())),
        f"- Firestore proxy: {faults['firestoreProxy']['connectionsReset']} connections reset, "
        f"{faults['firestoreProxy']['connectionsHeld']} held for "
        f"{faults['firestoreProxy']['holdSeconds']} s",
        f"- Secret Manager: down {plan['secretManagerDownSeconds']:.0f} s, "
        f"{faults['secretManagerCallsRefused']} calls refused",
        f"- `{faults['killed']}` killed with SIGKILL, answering again after "
        f"{faults['restartSeconds']} s",
        "",
        "Timeline (seconds from the first delivery; setup before it):",
        "",
    ]
    lines += [f"- {at:>6} s  {what}" for at, what in fig["timeline"]]
    lines += ["", "The books after one reconcile run:", ""]
    lines += _table(
        ["figure", "value", "promise"],
        [
            ["events per one-to-one booking", json.dumps(fig["eventsPerBooking"]), "paid: 1"],
            ["events per session", json.dumps(fig["eventsPerSession"]), "1"],
            [
                "sessions whose attendees differ from paid, unrefunded seats + teacher",
                fig["sessionsWithWrongAttendees"],
                "0",
            ],
            ["refunded seats still invited", fig["refundedSeatsStillInvited"], "0"],
            ["bookings lost (payment never applied)", fig["lost"], "0"],
            ["bookings stuck (not in their final state)", fig["stuck"], "0"],
            [
                "confirmed events of refunded bookings",
                fig["confirmedEventsOfRefundedBookings"],
                "0",
            ],
            ["one-to-one bookings with a wrong event", fig["bookingProblems"], "0"],
            ["payments claimed by another booking", fig["paymentsClaimedByAnotherBooking"], "0"],
            ["deliveries given up", fig["deliveriesGivenUp"], "0"],
        ],
    )
    lines += ["", "Attendees per session:", ""]
    lines += _table(
        ["session", "events", "expected attendees", "attendees", "missing", "extra"],
        [
            [
                s["sessionId"],
                s["events"],
                s["expectedAttendees"],
                s["attendees"],
                ", ".join(s["missing"]) or "-",
                ", ".join(s["extra"]) or "-",
            ]
            for s in fig["sessions"]
        ],
    )
    rec = fig["reconcile"]
    lines += [
        "",
        f"Reconcile: HTTP {rec['status']}, counts {json.dumps(rec['counts'])}, "
        f"outcomes {json.dumps(rec['outcomes'])}, remaining {rec['remaining']}.",
        f"Payment issues recorded for admins: {json.dumps(fig['paymentIssues'])}.",
        "",
        f"Answers ({ans['total']}), by function and status (`no answer`: the connection was "
        "refused or closed, e.g. while the instance was down):",
        "",
    ]
    lines += _table(
        ["function", "answers"],
        [[fn, ", ".join(f"{k}: {v}" for k, v in c.items())] for fn, c in ans["byFunction"].items()],
    )
    lines += [
        "",
        f"5xx other than 503: {ans['unexpected5xx']}. Answers slower than "
        f"{ans['ceilingSeconds']:.0f} s (Mercado Pago's wait) or never: "
        f"{ans['slowerThanCeiling']}"
        + (
            " (by when their request was sent: "
            + ", ".join(
                f"{k}: {v}, sent from {ans['slowSentBetween'][k][0]} s to "
                f"{ans['slowSentBetween'][k][1]} s"
                for k, v in ans["slowBySendingWindow"].items()
            )
            + ")"
            if ans["slowBySendingWindow"]
            else ""
        )
        + f". Timed answers: p50 {ans['p50Seconds']} s, p95 "
        f"{ans['p95Seconds']} s, max {ans['maxSeconds']} s. No answer: "
        + (", ".join(f"{k} x{v}" for k, v in ans["noAnswerByCause"].items()) or "none")
        + ".",
    ]
    log = fig["handlerLog"]
    lines += [
        "",
        "`payment_webhook`'s own log: outcomes "
        + ", ".join(f"{k} x{v}" for k, v in log["outcomes"].items())
        + f"; tracebacks {log['tracebacks']}; its 503s (`upstream_unavailable`) took a median "
        f"{log['upstreamUnavailableMedianMs']} ms, at most {log['upstreamUnavailableMaxMs']} ms.",
    ]
    if ans["slowerThanCeiling"]:
        lines += [
            "",
            "Why answers came later than 22 s: while an upstream is down, each request holds "
            "one of the instance's worker threads for up to its 10 s budget (the median above) "
            "before answering 503, so one instance with the deployed concurrency of 8 answers "
            "under one notification per second; the notifications arriving faster wait in "
            "front of it, past Mercado Pago's 22 s. Nothing is lost (each is delivered again), "
            "but the promise of an answer within 22 s holds per request inside the handler, "
            "not for a queue in front of one instance. On Cloud Run the excess would go to "
            "other instances (up to `max_instances`); here there is one.",
        ]
    if not fig["calendarHonoursIfMatch"]:
        lines += [
            "",
            "Note: the Calendar emulator does not yet refuse a stale `If-Match` (Google answers "
            "412). Group seats join the session's event with a read, then a patch with "
            "`If-Match`; without the 412, two seats joining at once can overwrite each other's "
            "attendee (a lost update of the emulator, not a second event).",
        ]
    return lines


def _fuzz(fig: dict[str, Any]) -> list[str]:
    lines = [
        "Generated from `docs/openapi.yaml` by schemathesis (positive and negative inputs, "
        "each with generated and with valid credentials), then the hostile table. "
        f"Run time {fig['seconds']} s.",
        "",
    ]
    functions = sorted(fig["answersByFunction"])
    lines += _table(
        ["function", "generated", "answers", "5xx but 503", "503"],
        [
            [
                fn,
                fig["generatedPerFunction"].get(fn, 0),
                ", ".join(f"{k}: {v}" for k, v in fig["answersByFunction"][fn].items()),
                fig["fivexxPerFunction"].get(fn, 0),
                fig["unavailablePerFunction"].get(fn, 0),
            ]
            for fn in functions
        ],
    )
    if fig["fivexxSamples"]:
        lines += ["", "5xx (or no answer), with a command that reproduces each:", ""]
        lines += [f"- `{s}`" for s in fig["fivexxSamples"]]
    if fig["undocumentedStatus"]:
        lines += [
            "",
            "Statuses the document does not list for the operation (not failures here): "
            + json.dumps(fig["undocumentedStatus"]),
        ]
    lines += ["", "Hostile inputs:", ""]
    lines += _table(
        ["input", "function", "answer"],
        [[row["name"], row["function"], row["status"]] for row in fig["hostile"]],
    )
    if fig["stalledUploads"]:
        lines += [
            "",
            "Stalled uploads (a body promised, 10 bytes sent, then nothing), as many at once as "
            "the function's deployed concurrency, while one normal request is timed:",
            "",
        ]
        lines += _table(
            ["function", "stalled", "normal request", "seconds", "after closing them"],
            [
                [
                    s["function"],
                    s["stalled"],
                    s["probeStatus"],
                    s["probeSeconds"],
                    s["afterClosingStatus"],
                ]
                for s in fig["stalledUploads"]
            ],
        )
    return lines


def _secrets(fig: dict[str, Any]) -> list[str]:
    lines = [
        f"Exact values searched ({fig['secretsSearched']}): " + ", ".join(fig["secretNames"]) + ".",
        f"Token shapes: {', '.join(fig['tokenShapes'])}.",
        f"Scanner self-check (a planted value and each shape are found): {fig['selfCheck']}.",
        "",
        f"Log lines: {fig['logLines']} in "
        + ", ".join(f"{k} ({v})" for k, v in fig["logFiles"].items())
        + ".",
        f"Firestore documents: {fig['documents']} in "
        + ", ".join(f"{k} ({v})" for k, v in fig["collections"].items())
        + ".",
        "",
        f"Matches: {fig['matches']}.",
    ]
    lines += [f"- {s}" for s in fig["matchSamples"]]
    return lines


def _load(fig: dict[str, Any]) -> list[str]:
    lines = [
        f"`payment_webhook` with {fig['threads']} worker threads (its deployed concurrency, "
        f"{fig['concurrency']}); Calendar and Mercado Pago answer after "
        f"{fig['upstreamLatencyMs']} ms; steps of {fig['stepSeconds']} s, open loop, half of "
        "the notifications duplicates (`payment.created` + `payment.updated`).",
        "",
    ]
    lines += _table(
        [
            "notifications/s",
            "sent",
            "achieved/s",
            "p50 ms",
            "p95 ms",
            "max ms",
            "answers",
            "RSS MiB",
        ],
        [
            [
                s["rate"],
                s["notifications"],
                s["achievedPerSecond"],
                s["p50Ms"],
                s["p95Ms"],
                s["maxMs"],
                json.dumps(s["statuses"]),
                s["peakRssMiB"],
            ]
            for s in fig["steps"]
        ],
    )
    lines += [
        "",
        f"Sustained at p95 under 1 s: **{fig['sustainedPerSecond']} notifications/s** "
        f"(p95 {fig['sustainedP95Ms']} ms). Serving process RSS {fig['rssMiB']} MiB, peak "
        f"{fig['peakRssMiB']} MiB.",
    ]
    return lines


def _bench(fig: dict[str, Any]) -> list[str]:
    cold = fig["coldStart"]
    lines = [
        f"Cold start: the staged artifact's import against `import functions_framework` plus "
        f"the client libraries it loads, median of {cold['rounds']} fresh interpreters each:",
        "",
    ]
    lines += _table(
        ["function", "staged import ms", "baseline ms", "ratio", "client libraries"],
        [
            [
                name,
                row["stagedImportMs"],
                row["baselineMs"],
                row["ratio"],
                ", ".join(row["clientLibraries"]),
            ]
            for name, row in cold["functions"].items()
        ],
    )
    for script, result in fig.get("bench", {}).get("scripts", {}).items():
        lines += ["", f"`bench/{script}` (exit {result['exitCode']}):", "", "```"]
        lines += result["ratioLines"] or ["(no ratio line)"]
        lines += ["```"]
    return lines


RENDER = {"chaos": _chaos, "fuzz": _fuzz, "secrets": _secrets, "load": _load, "bench": _bench}


def render(results: dict[str, Any], title: str, intro: list[str]) -> str:
    lines = [f"# {title}", "", *intro, ""]
    rows = []
    for name in PARTS:
        if name in results:
            part = results[name]
            rows.append(
                [
                    TITLES[name].split(":")[0],
                    _status(part),
                    headline(name, part["figures"]),
                    f"`{part['command']}`",
                ]
            )
    lines += _table(["part", "result", "figures", "reproduce"], rows)
    for name in PARTS:
        if name not in results:
            continue
        part = results[name]
        fig = part["figures"]
        lines += [
            "",
            f"## {TITLES[name]}",
            "",
            f"Measured {part['date']} on {part['cores']} cores ({part['machine']}). "
            f"Reproduce: `{part['command']}`.",
            "",
        ]
        if fig.get("failures"):
            lines += ["Broken promises:", ""]
            lines += [f"- {f}" for f in fig["failures"]]
            lines += [""]
        lines += RENDER[name](fig)
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> dict[str, Any]:
    if path.exists():
        results: dict[str, Any] = json.loads(path.read_text())
        return results
    return {}


def save(
    results: dict[str, Any], json_path: Path, md_path: Path, title: str, intro: list[str]
) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
    md_path.write_text(render(results, title, intro))
