"""Screenshots of the admin console's main views for the README (`docs/console-*.png`).

    .venv/bin/python -m devstack.screenshots

Starts a local stack of its own, pays a week of classes through the webhook, leaves a few
things for an admin to look at, then signs in with Chromium (Debian's, through Playwright)
and photographs each view.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from devstack.client import StackClient
from devstack.stack import ROOT, LocalStack
from devstack.when import day, iso

DOCS = ROOT / "docs"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A week of classes from 7 days ahead (days counted from today, see devstack.when).
CLASSES = [
    ("Álgebra I", "Ana Gómez", "ana.gomez", "Juan Pérez", iso(7, 18), iso(7, 19)),
    ("Física", "Luis Ortiz", "luis.ortiz", "Sofía Díaz", iso(7, 19, 30), iso(7, 20, 30)),
    ("Inglés B2", "Marta Ruiz", "marta.ruiz", "Tomás Alonso", iso(8, 9), iso(8, 10)),
    ("Álgebra I", "Ana Gómez", "ana.gomez", "Valentina Sosa", iso(8, 17), iso(8, 18)),
    ("Química", "Luis Ortiz", "luis.ortiz", "Mateo Romero", iso(9, 11), iso(9, 12)),
]


def seed(client: StackClient) -> None:
    for title, teacher, handle, student, start, end in CLASSES:
        booking_id = client.seed_booking(
            classTitle=title,
            teacher={"name": teacher, "email": f"{handle}@example.com"},
            student={"name": student, "email": f"{student.split()[0].lower()}@example.com"},
            start=start,
            end=end,
        )
        client.notify(client.create_payment(booking_id)["id"])
    client.seed_booking(
        classTitle="Historia",
        status="cancelled",
        needsAttention="event_cancelled",
        paymentId="1324",
        paymentStatus="approved",
        calendarStatus="cancelled",
        start=iso(8, 15),
        end=iso(8, 16),
        student={"name": "Lucía Vega", "email": "lucia@example.com"},
    )
    client.seed_booking(
        classTitle="Física",
        status="charged_back",
        needsAttention="payment_charged_back",
        paymentId="1377",
        paymentStatus="charged_back",
        start=iso(10, 10),
        end=iso(10, 11),
        student={"name": "Bruno Paz", "email": "bruno@example.com"},
    )
    stray = client.create_payment(None, external_reference="reserva-borrada")
    client.notify(stray["id"])
    key = {"X-API-Key": client.doc["secrets"]["admin_api_key"]}
    client.http.post(client.doc["functions"]["reconcile"], headers=key, timeout=60)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="console-shots-") as state:
        stack = LocalStack(functions_in_process=True, state_dir=Path(state))
        document = stack.start()
        try:
            client = StackClient(document)
            seed(client)
            shoot(document)
        finally:
            stack.stop()


def shoot(document: dict[str, object]) -> None:
    console = document["console"]["url"]  # type: ignore[index]
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path="/usr/bin/chromium",
            args=CHROMIUM_ARGS,
            headless=True,
            locale="es-AR",
            viewport={"width": 1200, "height": 760},
        )
        page = browser.new_page()
        page.goto(console)
        page.click("#sign-in")
        page.fill("input[name=email]", "admin@example.com")
        page.click("button[type=submit]")
        page.wait_for_selector("#app:not([hidden])")
        page.fill("#filters input[name=from]", day(7).isoformat())
        page.fill("#filters input[name=to]", day(13).isoformat())
        page.click("#filters button[type=submit]")
        page.wait_for_selector(".class-row")
        page.screenshot(path=DOCS / "console-classes.png", full_page=True)
        page.locator(".class-row").first.get_by_role("button", name="Reprogramar").click()
        page.fill("#reschedule-dialog input[name=date]", day(8).isoformat())
        page.fill("#reschedule-dialog input[name=start]", "17:30")
        page.fill("#reschedule-dialog input[name=end]", "18:30")
        page.click("#reschedule-confirm")
        page.wait_for_selector("#reschedule-message:not([hidden])")
        page.screenshot(path=DOCS / "console-reschedule-refused.png")
        page.click("#reschedule-dialog button[value=close]")
        page.click("[data-view=attention]")
        page.wait_for_selector(".attention-item")
        page.screenshot(path=DOCS / "console-attention.png", full_page=True)
        page.click("[data-view=health]")
        page.wait_for_selector(".card")
        page.screenshot(path=DOCS / "console-health.png", full_page=True)
        browser.close()
    for name in sorted(DOCS.glob("console-*.png")):
        print(f"wrote {name.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
