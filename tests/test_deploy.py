"""Deployment: staged artifacts that serve alone, deploy.sh's commands, and the Terraform.

No emulator and no Google account is needed: deploy.sh talks to a fake `gcloud` that records
its arguments, and the staged functions are served by functions-framework from the stage
alone, with nothing of the repository on their path.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import hcl2
import pytest
import requests
from hcl2.utils import SerializationOptions
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from devstack.stack import function_names
from shared.config import SecretNames

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
SETTINGS: dict[str, dict[str, Any]] = json.loads((INFRA / "functions.json").read_text())
FUNCTIONS_FRAMEWORK = Path(sys.executable).parent / "functions-framework"
PLAIN = SerializationOptions(with_comments=False, strip_string_quotes=True)
MUTATING = ("deploy", "add-invoker-policy-binding", "create", "update", "delete")
# Cloud Functions runs the interpreter this suite runs on (dev.sh insists on it).
RUNTIME = f"python{sys.version_info.major}{sys.version_info.minor}"

FAKE_GCLOUD = """#!{python}
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_GCLOUD_STATE"])
state.mkdir(exist_ok=True)
args = sys.argv[1:]
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(args) + "\\n")
words = [a for a in args if not a.startswith("--")]
if words[:3] == ["config", "get-value", "account"]:
    print("deployer@example.com")
elif words[:3] == ["secrets", "versions", "list"]:
    print("projects/p/secrets/" + words[3] + "/versions/1")
elif words[:3] == ["scheduler", "jobs", "describe"]:
    sys.exit(0 if (state / ("job-" + words[3])).exists() else 1)
elif words[:4] == ["scheduler", "jobs", "create", "http"]:
    (state / ("job-" + words[4])).touch()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deploy(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(cwd / "deploy.sh"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("build")
    result = _deploy("--stage-only", env={**os.environ, "BUILD_DIR": str(build)})
    assert result.returncode == 0, result.stderr
    return build


@pytest.fixture
def fake_gcloud(tmp_path: Path) -> dict[str, str]:
    """An environment whose `gcloud` records every call in `FAKE_GCLOUD_STATE/calls.jsonl`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_GCLOUD_STATE": str(tmp_path / "gcloud-state"),
        "BUILD_DIR": str(tmp_path / "build"),
        "GOOGLE_CLOUD_PROJECT": "demo-project",
        "CALENDAR_ID": "clases@example.com",
        "ADMIN_EMAILS": "ana@example.com,luis@example.com",
    }


def _calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_GCLOUD_STATE"]) / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _mutating(calls: list[list[str]]) -> list[list[str]]:
    return [call for call in calls if any(word in MUTATING for word in call[:4])]


def _with_scheduled_function(tmp_path: Path) -> Path:
    """A copy of the deploy inputs with one public and one scheduled function."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("deploy.sh", "requirements.txt"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "shared", tree / "shared")
    shutil.copytree(ROOT / "infra", tree / "infra")
    for name in ("payment_webhook", "renew_watch"):
        (tree / "functions" / name).mkdir(parents=True)
        (tree / "functions" / name / "main.py").write_text("")
    return tree


# -- staging ---------------------------------------------------------------------------------


def test_every_function_folder_has_deploy_settings() -> None:
    missing = set(function_names()) - set(SETTINGS)
    assert not missing, f"add an entry to infra/functions.json for {sorted(missing)}"


def test_staging_copies_main_shared_and_requirements_without_links(staged: Path) -> None:
    assert sorted(p.name for p in staged.iterdir() if p.is_dir()) == function_names()
    for name in function_names():
        stage = staged / name
        assert (stage / "main.py").read_bytes() == (
            ROOT / "functions" / name / "main.py"
        ).read_bytes()
        assert (stage / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
        assert sorted(p.name for p in (stage / "shared").glob("*.py")) == sorted(
            p.name for p in (ROOT / "shared").glob("*.py")
        )
        assert not [p for p in stage.rglob("*") if p.is_symlink() or p.name == "__pycache__"]
        assert "functions-framework" in (stage / "requirements.txt").read_text()


def test_staging_twice_gives_the_same_stage(staged: Path) -> None:
    before = {p.relative_to(staged): p.read_bytes() for p in staged.rglob("*") if p.is_file()}

    result = _deploy("--stage-only", env={**os.environ, "BUILD_DIR": str(staged)})

    assert result.returncode == 0, result.stderr
    after = {p.relative_to(staged): p.read_bytes() for p in staged.rglob("*") if p.is_file()}
    assert after == before


def test_each_staged_function_serves_alone(staged: Path, tmp_path: Path) -> None:
    """functions-framework on the stage only: no PYTHONPATH, the working directory elsewhere."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name in function_names():
            port = _free_port()
            process = subprocess.Popen(
                [
                    str(FUNCTIONS_FRAMEWORK),
                    f"--source={staged / name / 'main.py'}",
                    f"--target={name}",
                    "--host=127.0.0.1",
                    f"--port={port}",
                ],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{name}.log").open("wb"),
                start_new_session=True,
            )
            servers[name] = (process, port)
        for name, (process, port) in servers.items():
            response = _request_until_up(process, f"http://127.0.0.1:{port}/{name}")
            log = (tmp_path / f"{name}.log").read_text()
            assert response.status_code == 405, f"{name}: {response.status_code}\n{log}"
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)


def _request_until_up(process: subprocess.Popen[bytes], url: str) -> requests.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            return requests.put(url, timeout=5)
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- the locks -------------------------------------------------------------------------------


def _locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a lock; every requirement must be `name==version` + hashes."""
    locked: dict[str, tuple[str, list[str]]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hashes = re.split(r"\s+--hash=", line)
        requirement = Requirement(spec)
        pins = list(requirement.specifier)
        assert len(pins) == 1 and pins[0].operator == "==", f"{path.name}: not pinned: {line}"
        assert requirement.url is None and not requirement.extras, f"{path.name}: {line}"
        assert hashes, f"{path.name}: {requirement.name} has no hash"
        assert all(re.fullmatch("sha256:[0-9a-f]{64}", h) for h in hashes), f"{path.name}: {line}"
        name = canonicalize_name(requirement.name)
        assert name not in locked, f"{path.name}: {name} twice"
        locked[name] = (pins[0].version, hashes)
    return locked


def _direct(path: Path) -> list[Requirement]:
    """The requirements a hand-edited .in file names, following `-r`."""
    found: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += _direct(path.parent / line.removeprefix("-r ").strip())
        elif line:
            found.append(Requirement(line))
    return found


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-dev.txt"])
def test_every_locked_package_is_pinned_with_a_hash(lock: str) -> None:
    """pip and Cloud Functions' build then install exactly these files, or stop."""
    assert len(_locked(ROOT / lock)) > 10


@pytest.mark.parametrize(
    ("source", "lock"),
    [("requirements.in", "requirements.txt"), ("requirements-dev.in", "requirements-dev.txt")],
)
def test_the_lock_holds_every_direct_dependency_at_its_pin(source: str, lock: str) -> None:
    locked = _locked(ROOT / lock)
    for requirement in _direct(ROOT / source):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in {source} but not in {lock}: run ./dev.sh lock"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (
            f"{lock} has {name}=={locked[name][0]}, {source} says {requirement.specifier}: "
            "run ./dev.sh lock"
        )


def test_the_suite_runs_on_exactly_what_is_deployed() -> None:
    """The dev lock holds the runtime lock unchanged, and this environment holds the dev lock."""
    runtime, dev = _locked(ROOT / "requirements.txt"), _locked(ROOT / "requirements-dev.txt")
    assert {name: runtime[name] for name in runtime} == {name: dev.get(name) for name in runtime}
    installed = {name: importlib.metadata.version(name) for name in dev}
    assert installed == {name: version for name, (version, _) in dev.items()}


# -- deploy.sh -------------------------------------------------------------------------------


def test_dry_run_prints_every_deploy_and_changes_nothing(fake_gcloud: dict[str, str]) -> None:
    result = _deploy("--dry-run", env=fake_gcloud)

    assert result.returncode == 0, result.stderr
    assert _mutating(_calls(fake_gcloud)) == []
    assert not Path(fake_gcloud["BUILD_DIR"]).exists()
    deploys = [line for line in result.stdout.splitlines() if "functions deploy" in line]
    assert len(deploys) == len(function_names())
    for name, line in zip(function_names(), deploys, strict=True):
        assert f"gcloud functions deploy {name} --gen2" in line
        assert f"--entry-point={name}" in line
        assert f"--source={fake_gcloud['BUILD_DIR']}/{name}" in line
        assert f"--service-account=fn-{name.replace('_', '-')}@demo-project." in line
        assert f"--runtime={RUNTIME}" in line and "--trigger-http" in line
        assert "ADMIN_EMAILS=ana@example.com,luis@example.com" in line
        public = SETTINGS[name]["invoker"] not in ("scheduler", "tasks")
        assert ("--allow-unauthenticated" in line) is public


def test_deploy_issues_the_expected_commands_and_is_safe_to_run_twice(
    fake_gcloud: dict[str, str], tmp_path: Path
) -> None:
    tree = _with_scheduled_function(tmp_path)

    first = _deploy(env=fake_gcloud, cwd=tree)
    first_calls = _mutating(_calls(fake_gcloud))
    second = _deploy(env=fake_gcloud, cwd=tree)
    second_calls = _mutating(_calls(fake_gcloud))[len(first_calls) :]

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert [call[:3] for call in first_calls] == [
        ["functions", "deploy", "payment_webhook"],
        ["functions", "deploy", "renew_watch"],
        ["functions", "add-invoker-policy-binding", "renew_watch"],
        ["scheduler", "jobs", "create"],
    ]
    assert [call[:3] for call in second_calls[:3]] == [call[:3] for call in first_calls[:3]]
    assert second_calls[3][:3] == ["scheduler", "jobs", "update"]
    job = first_calls[3]
    url = "https://southamerica-east1-demo-project.cloudfunctions.net/renew_watch"
    assert f"--schedule={SETTINGS['renew_watch']['schedule']}" in job
    assert f"--oidc-token-audience={url}" in job and f"--uri={url}" in job
    assert (
        "--oidc-service-account-email=scheduler-invoker@demo-project.iam.gserviceaccount.com" in job
    )
    assert (Path(fake_gcloud["BUILD_DIR"]) / "renew_watch" / "shared" / "config.py").exists()
    assert "payment_webhook?source_news=webhooks" in second.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALENDAR_AUTH", "service-account"),
        ("PUBLIC_EVENTS_ENABLED", "maybe"),
        ("ADMIN_EMAILS", "ana@example.com,luis"),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "deploy"])
def test_deploy_refuses_a_setting_the_functions_would_refuse(
    fake_gcloud: dict[str, str], name: str, value: str, dry_run: bool
) -> None:
    result = _deploy(*(["--dry-run"] if dry_run else []), env={**fake_gcloud, name: value})

    assert result.returncode != 0
    assert f"invalid setting: {name} must be" in result.stderr
    assert value not in result.stderr
    assert _mutating(_calls(fake_gcloud)) == []
    assert "functions deploy" not in result.stdout


def test_a_missing_gcloud_is_named(fake_gcloud: dict[str, str]) -> None:
    result = _deploy("--dry-run", env={**fake_gcloud, "GCLOUD": "gcloud-not-installed"})

    assert result.returncode != 0
    assert "gcloud is missing" in result.stderr


def test_a_missing_calendar_id_is_named(fake_gcloud: dict[str, str]) -> None:
    env = {k: v for k, v in fake_gcloud.items() if k != "CALENDAR_ID"}

    result = _deploy("--dry-run", env=env)

    assert result.returncode != 0
    assert "CALENDAR_ID is not set" in result.stderr


# -- Terraform -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def terraform() -> dict[str, list[Any]]:
    """Every block of infra/*.tf, merged by kind (resource, variable, output...)."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(INFRA.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=PLAIN)
            for kind, blocks in parsed.items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def _resources(terraform: dict[str, list[Any]], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in terraform["resource"]:
        for name, body in block.get(kind, {}).items():
            found[name] = body
    return found


def test_terraform_declares_the_project_region_calendar_and_admins(
    terraform: dict[str, list[Any]],
) -> None:
    variables = {name: body for block in terraform["variable"] for name, body in block.items()}
    assert {"project_id", "region", "calendar_id", "admin_emails"} <= set(variables)
    assert variables["region"]["default"] == "southamerica-east1"


def test_the_runtime_deployed_is_the_one_tested(terraform: dict[str, list[Any]]) -> None:
    variables = {name: body for block in terraform["variable"] for name, body in block.items()}
    assert variables["runtime"]["default"] == RUNTIME
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (
        pyproject["tool"]["mypy"]["python_version"]
        == f"{sys.version_info.major}.{sys.version_info.minor}"
    )
    assert f"PYTHON_MINOR={sys.version_info.minor}\n" in (ROOT / "dev.sh").read_text()


def test_terraform_creates_every_secret_the_code_reads(terraform: dict[str, list[Any]]) -> None:
    source = (INFRA / "main.tf").read_text()
    secret_ids = {field.default for field in dataclasses.fields(SecretNames)}
    for secret_id in secret_ids:
        assert f'"{secret_id}"' in source, secret_id
    for name, fn in SETTINGS.items():
        assert set(fn["reads_secrets"]) <= secret_ids, name
        assert set(fn["rotates_secrets"]) <= secret_ids, name
    assert "google_secret_manager_secret_version" not in source  # values never enter the state


def test_refresh_token_rotation_may_disable_versions_but_never_destroy_them(
    terraform: dict[str, list[Any]],
) -> None:
    role = _resources(terraform, "google_project_iam_custom_role")["secret_rotator"]
    permissions = set(role["permissions"])
    # What shared/secrets.add_secret_version calls, and nothing that loses a version.
    assert {"secretmanager.versions.add", "secretmanager.versions.list"} <= permissions
    assert "secretmanager.versions.disable" in permissions
    assert not {p for p in permissions if p.endswith((".destroy", ".delete"))}
    grants = _resources(terraform, "google_secret_manager_secret_iam_member")
    assert grants["rotator"]["role"] == "${google_project_iam_custom_role.secret_rotator.name}"
    assert all("secretVersionManager" not in grant["role"] for grant in grants.values())
    # The callback only writes the token (add, list, disable): it needs no accessor grant.
    callback = SETTINGS["oauth_callback"]
    assert "google-calendar-refresh-token" in callback["rotates_secrets"]
    assert "google-calendar-refresh-token" not in callback["reads_secrets"]


def test_terraform_outputs_the_urls_to_register(terraform: dict[str, list[Any]]) -> None:
    outputs = {name: body for block in terraform["output"] for name, body in block.items()}
    assert {"function_urls", "oauth_redirect_uri", "mercadopago_webhook_url"} <= set(outputs)
    assert "source_news=webhooks" in outputs["mercadopago_webhook_url"]["value"]


def test_scheduled_functions_get_an_oidc_job_and_only_the_scheduler_may_call_them(
    terraform: dict[str, list[Any]],
) -> None:
    job = _resources(terraform, "google_cloud_scheduler_job")["job"]
    target = job["http_target"][0]
    assert "oidc_token" in target
    scheduled = {name for name, fn in SETTINGS.items() if fn["invoker"] == "scheduler"}
    assert scheduled == {"renew_watch", "reconcile"}
    assert all(SETTINGS[name].get("schedule") for name in scheduled)
    invokers = _resources(terraform, "google_cloud_run_v2_service_iam_member")
    assert invokers["public"]["member"] == "allUsers"
    assert "local.open" in invokers["public"]["for_each"]
    assert "scheduler" in invokers["scheduler"]["member"]


def test_terraform_is_formatted() -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed; `terraform fmt -check infra` not run")
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_checkov_finds_no_risk_that_is_not_accepted() -> None:
    """Accepted risks are `#checkov:skip=ID:reason` comments; each is listed in infra/README.md."""
    checkov = ROOT / ".venv-audit" / "bin" / "checkov"
    if not checkov.exists():
        found = shutil.which("checkov")
        if found is None:
            pytest.skip(
                "checkov is not installed: python -m venv .venv-audit && "
                ".venv-audit/bin/pip install -r requirements-audit.txt"
            )
        checkov = Path(found)
    result = subprocess.run(
        [str(checkov), "-d", str(INFRA), "--framework=terraform", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)["results"]
    failed = [(c["check_id"], c["resource"]) for c in report["failed_checks"]]
    assert failed == []
    accepted = (INFRA / "README.md").read_text()
    for check in report["skipped_checks"]:
        assert check["check_result"]["suppress_comment"].strip(), check["check_id"]
        assert check["check_id"] in accepted, f"list {check['check_id']} in infra/README.md"
