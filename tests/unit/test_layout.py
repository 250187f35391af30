"""The folders of `shared/` are its architecture; these rules keep them so.

    web -> services, views -> domain, adapters -> clock, config, errors, logs

A module imports only from its own folder or from the floors below it; the top-level
modules import each other in one order, so there is no circle; and only `shared/adapters/`
speaks to an upstream (client libraries, HTTP) or builds a Firestore reference.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TOP = ("errors", "clock", "logs", "config")
"""Each may import only the ones before it."""
FLOORS = {
    "domain": 1,
    "adapters": 1,
    "services": 2,
    "views": 2,
    "web": 3,
}
MAY_IMPORT = {
    "domain": {"domain"},
    "adapters": {"domain", "adapters"},
    "services": {"domain", "adapters", "services"},
    "views": {"domain", "adapters", "views"},
    "web": {"domain", "adapters", "services", "views", "web"},
}
UPSTREAM_LIBRARIES = (
    "google.cloud",
    "google.api_core",
    "google.auth",
    "google.oauth2",
    "google_auth_oauthlib",
    "google_auth_httplib2",
    "googleapiclient",
    "httplib2",
    "mercadopago",
    "oauthlib",
    "requests",
)


def _modules() -> list[Path]:
    return sorted(p for p in SHARED.rglob("*.py") if p.name != "__init__.py" or p.parent != SHARED)


def _name(path: Path) -> str:
    return ".".join(path.relative_to(SHARED.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "shared":
                found += [f"shared.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def _place(module: str) -> str:
    """`domain`, `adapters`... for a folder's module; the module's name for a top-level one."""
    return module.split(".")[1]


def test_shared_is_five_folders_and_the_top_level_modules() -> None:
    folders = {p.name for p in SHARED.iterdir() if p.is_dir() and p.name != "__pycache__"}
    top = {p.stem for p in SHARED.glob("*.py") if p.stem != "__init__"}
    assert folders == set(FLOORS)
    assert top == set(TOP)


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_a_module_imports_only_its_folder_and_the_floors_below(path: Path) -> None:
    module = _name(path)
    place = _place(module)
    for imported in _imports(path):
        if not imported.startswith("shared."):
            continue
        target = _place(imported)
        if target in TOP:
            if place in TOP:
                assert TOP.index(target) < TOP.index(place), f"{module} imports {imported}"
            continue
        assert place not in TOP, f"the top-level {module} imports {imported}"
        assert target in MAY_IMPORT[place], f"{module} ({place}) imports {imported}"


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_only_adapters_speak_to_upstreams(path: Path) -> None:
    if _place(_name(path)) == "adapters":
        return
    source = path.read_text()
    for imported in _imports(path):
        assert not imported.startswith(UPSTREAM_LIBRARIES), f"{_name(path)} imports {imported}"
    reference = re.search(r"firestore_client\(|\.collection\(|\)\.document\(", source)
    assert reference is None, f"{_name(path)} builds a Firestore reference: {reference}"


def test_the_domain_takes_no_clock_reading() -> None:
    """Decisions take `now` as an argument: nothing in `shared/domain/` reads the clock."""
    for path in (SHARED / "domain").glob("*.py"):
        source = path.read_text()
        for reading in ("clock.now(", "datetime.now(", "time.time(", "time.monotonic("):
            assert reading not in source, f"{path.name} reads the clock ({reading})"
