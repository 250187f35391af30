"""`python -m proof [PART ...] [--short]` (called by `./dev.sh proof`).

Without parts, every part runs; the parts that need a stack share one (chaos, fuzz, load,
then the secrets scan over everything they made the stack write). `--short` is the version
`./dev.sh test` runs: chaos, fuzz and secrets, smaller, written under `.local/proof/`.
Exit status 1 when a figure breaks its promise.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Any

from devstack.stack import ROOT, PrerequisiteMissing
from proof.chaos import FULL, SHORT, run_chaos
from proof.harness import PROOF_DIR, ProofStack, cores
from proof.report import PARTS, headline, load_results, save
from proof.secrets_scan import run_secrets, secret_values

DOC = ROOT / "docs" / "proof.md"
INTRO = [
    "What this system promises, measured on the local stack by `./dev.sh proof` (code in "
    "[`proof/`](../proof/)), which starts a stack of its own (functions as processes, with "
    "the concurrency `infra/functions.json` deploys them with; Firestore behind a proxy that "
    "can break connections), runs every part, rewrites this file and prints a summary. "
    "Each part also runs alone, e.g. `./dev.sh proof chaos`; the figures of the parts not "
    "re-run are kept (`docs/proof.json`). A short version (a few bookings and seats, a few "
    "hundred fuzz cases, the same checks, the secrets scan) runs inside `./dev.sh test` "
    "(`tests/test_proof_short.py`), so a change that breaks exactly-once or brings back a "
    "500 fails the suite.",
    "",
    "A failing figure is reported here as measured, with what reproduces it; it is never left out.",
]


def _machine() -> str:
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, Python {platform.python_version()}{memory}"


def redact(value: Any, secrets: dict[str, str]) -> Any:
    """The figures never carry a secret's value (a fuzz case's curl command may hold one)."""
    if isinstance(value, str):
        for name, secret in secrets.items():
            value = value.replace(secret, f"<{name}>")
        return value
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, tuple):
        return [redact(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev.sh proof", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"any of {', '.join(PARTS)}")
    parser.add_argument("--short", action="store_true", help="the version ./dev.sh test runs")
    parser.add_argument("--out", type=Path, help="the Markdown report (default docs/proof.md)")
    parser.add_argument("--json", type=Path, help="the figures as JSON (default beside --out)")
    parser.add_argument(
        "--state-dir", type=Path, help="the stack's logs and state (default .local/proof/stack)"
    )
    parser.add_argument("--cases", type=int, help="fuzz: generated cases per function")
    parser.add_argument("--rounds", type=int, default=11, help="cold start: runs per function")
    parser.add_argument("--load-rates", default="10,15,20,25,30,35,40,50,60")
    parser.add_argument("--load-step-seconds", type=float, default=15.0)
    parser.add_argument("--load-latency-ms", type=int, default=60)
    args = parser.parse_args(argv)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}: choose among {', '.join(PARTS)}")
    short: bool = args.short
    parts = list(args.parts) or (["chaos", "fuzz", "secrets"] if short else list(PARTS))
    out: Path = args.out or (PROOF_DIR / "short.md" if short else DOC)
    out_json: Path = args.json or out.with_suffix(".json")
    cases = args.cases or (30 if short else 1000)
    results = {} if short else load_results(out_json)
    title = "Proof (short version)" if short else "Proof: what we promise, measured"
    began = time.monotonic()
    secrets: dict[str, str] = {}

    def record(name: str, figures: dict[str, Any]) -> None:
        command = f"./dev.sh proof {name}" + (" --short" if short else "")
        results[name] = {
            "figures": redact(figures, secrets),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": cores(),
            "machine": _machine(),
            "command": command,
        }
        save(results, out_json, out, title, INTRO)
        status = "FAIL" if figures.get("failures") else "ok"
        print(f"proof {name}: {status} ({time.monotonic() - began:.0f} s)", flush=True)

    try:
        if {"chaos", "fuzz", "secrets", "load"} & set(parts):
            from proof.fuzz import run_fuzz
            from proof.load import run_load

            with ProofStack(args.state_dir or PROOF_DIR / "stack") as stack:
                secrets = secret_values(stack)
                print(f"proof: stack up in {stack.started_seconds:.1f} s", flush=True)
                if "chaos" in parts:
                    record("chaos", run_chaos(stack, SHORT if short else FULL))
                elif "secrets" in parts:
                    run_chaos(stack, SHORT)  # traffic for the scan to read
                if "fuzz" in parts:
                    record("fuzz", run_fuzz(stack, cases, 2 if short else None))
                if "load" in parts:
                    rates = [float(r) for r in args.load_rates.split(",")]
                    record(
                        "load",
                        run_load(stack, rates, args.load_step_seconds, args.load_latency_ms),
                    )
                if "secrets" in parts:
                    secrets = secret_values(stack)  # versions added during the run too
                    record("secrets", run_secrets(stack))
        if "bench" in parts:
            from proof.benchmarks import run_benchmarks

            record("bench", run_benchmarks(args.rounds, scripts=not short))
    except PrerequisiteMissing as exc:
        print(f"dev.sh: {exc}", file=sys.stderr)
        return 2
    print(f"\nProof written to {out} ({time.monotonic() - began:.0f} s):")
    failed = False
    for name in parts:
        figures = results[name]["figures"]
        verdict = "FAIL" if figures.get("failures") else "PASS"
        print(f"  {name:8} {verdict}  {headline(name, figures)}")
        for failure in figures.get("failures", []):
            failed = True
            print(f"           - {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
