"""`./dev.sh` says what to install when a prerequisite is missing, and stops."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("bash", "dirname", "sed", "cat", "readlink")


def _path_with(tmp_path: Path, *commands: str) -> str:
    """A PATH holding only `commands` (and the shell basics dev.sh itself uses)."""
    for name in (*TOOLS, *commands):
        # The real interpreter, not a version manager's shim that needs a full PATH.
        found = os.path.realpath(sys.executable) if name == "python3" else shutil.which(name)
        if found:
            (tmp_path / name).symlink_to(found)
    return str(tmp_path)


@pytest.mark.parametrize(
    ("present", "named"),
    [
        (("python3",), "Java"),
        (("python3", "java"), "gcloud"),
    ],
)
def test_missing_prerequisite_is_named_and_exits_non_zero(
    tmp_path: Path, present: tuple[str, ...], named: str
) -> None:
    env = {**os.environ, "PATH": _path_with(tmp_path, *present)}

    result = subprocess.run(
        ["bash", str(ROOT / "dev.sh"), "up"], env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode != 0
    assert named in result.stderr
    assert "install" in result.stderr
