"""Part 5, benchmarks: the `bench/` scripts' ratio lines, and cold start per function.

Each `bench/*.py` runs as `./dev.sh bench` runs it (its own stack, each figure a ratio
against a baseline measured in the same run); its whole output is kept under
`.local/proof/bench/` and the lines that state a ratio are collected.

Cold start: every function is staged exactly as `deploy.sh --stage-only` stages it (a
`build/<name>/` with `main.py`, `shared/` and the lock), then, in a fresh interpreter each
time, the staged `main` is imported, against a baseline that imports `functions_framework`
plus the client libraries that function loads (the ones found in `sys.modules` after
importing it). Medians of `rounds` alternated runs, after one warm-up of each (bytecode
written, file cache warm, as on a deployed image).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from devstack.stack import ROOT, function_names
from proof.harness import PROOF_DIR

CLIENT_LIBRARIES = (
    "google.cloud.firestore",
    "google.cloud.secretmanager",
    "googleapiclient.discovery",
    "google_auth_oauthlib.flow",
    "google_auth_httplib2",
    "google.oauth2.credentials",
    "mercadopago",
    "icalendar",
    "requests",
)
RATIO_LINE = re.compile(r"\bratio|full / incremental|->|upstream calls|RSS|Firestore RPCs", re.I)

_STAGED = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
import main  # noqa
seconds = time.perf_counter() - started
loaded = [name for name in json.loads(sys.argv[2]) if name in sys.modules]
print(json.dumps({"seconds": seconds, "loaded": loaded}))
"""
_BASELINE = """
import importlib, json, sys, time
started = time.perf_counter()
import functions_framework  # noqa
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def run_bench_scripts(out_dir: Path = PROOF_DIR / "bench") -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    failures = []
    for script in sorted((ROOT / "bench").glob("*.py")):
        completed = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        (out_dir / f"{script.stem}.log").write_text(completed.stdout + completed.stderr)
        lines = [line.strip() for line in completed.stdout.splitlines()]
        results[script.name] = {
            "exitCode": completed.returncode,
            "ratioLines": [
                line for line in lines if RATIO_LINE.search(line) and not line.startswith("{")
            ],
        }
        if completed.returncode != 0:
            failures.append(f"bench/{script.name} exited {completed.returncode}")
    return {"scripts": results, "failures": failures}


def _python(code: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),  # nothing of the repository on the path but what is asked
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def cold_starts(rounds: int) -> dict[str, Any]:
    build = Path(tempfile.mkdtemp(prefix="proof-stage-"))
    subprocess.run(
        [str(ROOT / "deploy.sh"), "--stage-only"],
        env={**os.environ, "BUILD_DIR": str(build)},
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    candidates = json.dumps(CLIENT_LIBRARIES)
    rows = {}
    for name in function_names():
        staged_dir = str(build / name)
        loaded = _python(_STAGED, staged_dir, candidates)["loaded"]  # warm-up, and what it needs
        libraries = json.dumps(loaded)
        _python(_BASELINE, libraries)
        staged, baseline = [], []
        for _ in range(rounds):
            staged.append(_python(_STAGED, staged_dir, candidates)["seconds"])
            baseline.append(_python(_BASELINE, libraries)["seconds"])
        staged_ms = statistics.median(staged) * 1000
        baseline_ms = statistics.median(baseline) * 1000
        rows[name] = {
            "stagedImportMs": round(staged_ms, 1),
            "baselineMs": round(baseline_ms, 1),
            "ratio": round(staged_ms / baseline_ms, 2),
            "clientLibraries": loaded,
        }
    return {"rounds": rounds, "functions": rows, "stagedIn": str(build)}


def run_benchmarks(rounds: int, scripts: bool = True) -> dict[str, Any]:
    figures: dict[str, Any] = {"coldStart": cold_starts(rounds)}
    failures: list[str] = []
    if scripts:
        figures["bench"] = run_bench_scripts()
        failures += figures["bench"]["failures"]
    figures["failures"] = failures
    return figures
