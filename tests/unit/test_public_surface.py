"""Each `shared` module declares its public surface, and nothing else reaches past it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "shared").glob("*.py") if p.stem != "__init__")
USERS = [
    path
    for folder in ("shared", "functions", "tests", "bench", "devstack")
    for path in sorted((ROOT / folder).rglob("*.py"))
]


@pytest.mark.parametrize("name", MODULES)
def test_every_shared_module_declares_its_public_names(name: str) -> None:
    module = importlib.import_module(f"shared.{name}")
    declared = getattr(module, "__all__", None)
    assert declared is not None, f"shared/{name}.py has no __all__"
    missing = [item for item in declared if not hasattr(module, item)]
    assert not missing, f"shared/{name}.py declares names it does not define: {missing}"


def test_nothing_imports_a_name_a_shared_module_keeps_private() -> None:
    surfaces = {name: set(importlib.import_module(f"shared.{name}").__all__) for name in MODULES}
    reaching: list[str] = []
    for path in USERS:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared."):
                owner = (node.module or "").removeprefix("shared.")
                for alias in node.names:
                    if owner in surfaces and alias.name not in surfaces[owner]:
                        reaching.append(f"{path.relative_to(ROOT)}: {owner}.{alias.name}")
    assert not reaching
