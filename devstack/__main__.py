"""`python -m devstack up|demo` (called by ./dev.sh)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from devstack.stack import ROOT, LocalStack, PrerequisiteMissing


def _summary(doc: dict[str, object], seconds: float) -> str:
    lines = [f"Local stack ready in {seconds:.1f}s (project {doc['project_id']})."]
    lines += [f"  function  {name:24} {url}" for name, url in doc["functions"].items()]  # type: ignore[attr-defined]
    lines += [f"  emulator  {name:24} {url}" for name, url in doc["emulators"].items()]  # type: ignore[attr-defined]
    console: dict[str, str] = doc.get("console") or {}  # type: ignore[assignment]
    if console.get("url"):
        lines.append(
            f"Admin console: {console['url']} (sign in as {console['sign_in_as']} on the OAuth "
            "emulator's page)"
        )
    lines.append(f"Contract written to {ROOT / '.local' / 'stack.json'}. Ctrl-C stops everything.")
    return "\n".join(lines)


def up() -> int:
    started = time.monotonic()
    stack = LocalStack(scheduling_queue=True)
    stopping = threading.Event()
    # Ctrl-C and a plain `kill` both stop everything this process started (and nothing else),
    # even when started in the background, where SIGINT would otherwise be ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        doc = stack.start()
        print(_summary(doc, time.monotonic() - started), flush=True)
        stopping.wait()
    finally:
        stack.stop()
        print("Local stack stopped.", flush=True)
    return 0


def demo() -> int:
    from devstack.demo import run_demo

    stack_file = ROOT / ".local" / "stack.json"
    stack: LocalStack | None = None
    doc = None
    if stack_file.exists():
        doc = json.loads(stack_file.read_text())
        from devstack.stack import is_alive

        if not is_alive(doc):
            doc = None
    if doc is None:
        stack = LocalStack(scheduling_queue=True)
        doc = stack.start()
    try:
        summary = run_demo(doc)
    finally:
        if stack is not None:
            stack.stop()
    console = doc.get("console") or {}
    summary["consoleUrl"] = console.get("url")
    if console.get("url"):
        where = "stopped with the demo: run ./dev.sh up to keep one" if stack else "running"
        print(
            f"13. The admin console of this stack ({where}): {console['url']}"
            f" (sign in as {console['sign_in_as']})"
        )
    print(json.dumps(summary, sort_keys=True))
    return 0 if summary.get("ok") else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up", "demo"])
    args = parser.parse_args()
    try:
        return up() if args.command == "up" else demo()
    except PrerequisiteMissing as exc:
        print(f"dev.sh: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
