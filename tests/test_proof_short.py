"""The short proof inside the suite: a few bookings and seats through every fault, a few
hundred fuzz cases, the secrets scan. A change that breaks exactly-once, brings back a 500
or leaks a secret fails here; docs/proof.md holds the full version's figures.

The proof runs as `python -m proof --short` in a process of its own, with a stack of its
own (functions as processes, so one can be killed), and the tests read its figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROOF_TIMEOUT = 420

pytestmark = pytest.mark.timeout(PROOF_TIMEOUT + 60)


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    where = tmp_path_factory.mktemp("proof")
    out = where / "short.md"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "proof",
            "--short",
            "--out",
            str(out),
            "--state-dir",
            str(where / "stack"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PROOF_TIMEOUT,
        check=False,
    )
    figures_file = out.with_suffix(".json")
    assert figures_file.exists(), completed.stdout + completed.stderr
    results: dict[str, Any] = json.loads(figures_file.read_text())
    assert set(results) == {"chaos", "fuzz", "secrets"}, completed.stdout + completed.stderr
    return {name: part["figures"] for name, part in results.items()}


def test_the_faults_really_happened(proof: dict[str, Any]) -> None:
    faults = proof["chaos"]["faults"]

    assert sum(faults["calendarFaultsInjected"].values()) > 0
    assert faults["firestoreProxy"]["connectionsReset"] > 0
    # One freeze of the planned 12 s; a loaded machine wakes a little late, never early.
    [held] = faults["firestoreProxy"]["holdSeconds"]
    assert 12.0 <= held < 13.0
    assert faults["secretManagerCallsRefused"] > 0
    assert faults["restartSeconds"] > 0
    assert proof["chaos"]["refunds"]["made"] >= 2


def test_every_paid_booking_has_one_event_and_none_is_lost_or_stuck(
    proof: dict[str, Any],
) -> None:
    chaos = proof["chaos"]

    assert (chaos["lost"], chaos["stuck"]) == (0, 0), chaos["stuckSamples"]
    assert chaos["bookingProblems"] == 0, chaos["bookingProblemSamples"]
    assert set(chaos["eventsPerBooking"]) <= {
        "paid: 1 event(s), 1 confirmed",
        "refunded: 0 event(s), 0 confirmed",
        "refunded: 1 event(s), 0 confirmed",
    }
    assert chaos["eventsPerSession"] == {"1": chaos["plan"]["sessions"]}
    assert chaos["confirmedEventsOfRefundedBookings"] == 0
    assert chaos["refundedSeatsStillInvited"] == 0
    assert chaos["paymentsClaimedByAnotherBooking"] == 0


def test_a_session_s_attendees_are_its_paid_unrefunded_seats_and_the_teacher(
    proof: dict[str, Any],
) -> None:
    chaos = proof["chaos"]
    wrong = [s for s in chaos["sessions"] if s["missing"] or s["extra"]]
    if wrong and not chaos["calendarHonoursIfMatch"]:
        pytest.xfail(
            "a seat's attendee was lost: the Calendar emulator does not refuse a stale "
            f"If-Match yet (Google answers 412), so two seats joining at once race: {wrong}"
        )

    assert wrong == []


def test_no_5xx_but_503_and_no_answer_slower_than_mercado_pago_waits(
    proof: dict[str, Any],
) -> None:
    answers = proof["chaos"]["answers"]

    assert answers["unexpected5xx"] == 0, answers["unexpected5xxSamples"]
    assert answers["slowerThanCeiling"] == 0, answers["slowSamples"]


def test_fuzzing_finds_no_5xx_and_sends_a_few_hundred_cases(proof: dict[str, Any]) -> None:
    fuzz = proof["fuzz"]

    assert fuzz["failures"] == [], fuzz["fivexxSamples"]
    assert set(fuzz["fivexxPerFunction"].values()) == {0}
    assert fuzz["unavailablePerFunction"] == {}
    assert min(fuzz["generatedPerFunction"].values()) >= 30
    assert sum(fuzz["generatedPerFunction"].values()) + fuzz["hostileCases"] >= 300


def test_no_secret_in_any_log_line_or_document(proof: dict[str, Any]) -> None:
    scan = proof["secrets"]

    assert scan["selfCheck"] == "passed"
    assert scan["logLines"] > 0
    assert scan["documents"] > 0
    assert scan["matches"] == 0, scan["matchSamples"]
