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
PYTHON = "python3.13"  # the runtime deployed (python313); this suite runs on it
# What a version manager's shim does when the version it stands for is not the selected one.
BROKEN_SHIM = "#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n"


def _path_with(tmp_path: Path, *commands: str) -> str:
    """A PATH holding only `commands` (and the shell basics dev.sh itself uses)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (*TOOLS, *commands):
        # The real interpreter, not a version manager's shim that needs a full PATH.
        found = os.path.realpath(sys.executable) if name == PYTHON else shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    return str(bin_dir)


def _dev_sh(
    tmp_path: Path, path: str, pyenv_root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": path,
        "HOME": str(tmp_path),
        "PYENV_ROOT": str(pyenv_root or tmp_path / "no-pyenv"),
    }
    return subprocess.run(
        ["bash", str(ROOT / "dev.sh"), "up"], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("present", "named"),
    [
        ((), "Python 3.13 is missing"),
        ((PYTHON,), "Java"),
        ((PYTHON, "java"), "gcloud"),
    ],
)
def test_missing_prerequisite_is_named_and_exits_non_zero(
    tmp_path: Path, present: tuple[str, ...], named: str
) -> None:
    result = _dev_sh(tmp_path, _path_with(tmp_path, *present))

    assert result.returncode != 0
    assert named in result.stderr
    assert "install" in result.stderr


def test_a_python_that_does_not_run_is_not_taken_for_3_13(tmp_path: Path) -> None:
    path = _path_with(tmp_path)
    shim = Path(path) / PYTHON
    shim.write_text(BROKEN_SHIM)
    shim.chmod(0o755)

    result = _dev_sh(tmp_path, path)

    assert result.returncode != 0
    assert "Python 3.13 is missing" in result.stderr
    assert "install Python 3.13 with venv" in result.stderr


def test_pyenv_s_3_13_is_found_when_the_shim_on_the_path_does_not_run(tmp_path: Path) -> None:
    path = _path_with(tmp_path)
    shim = Path(path) / PYTHON
    shim.write_text(BROKEN_SHIM)
    shim.chmod(0o755)
    pyenv_root = tmp_path / "pyenv"
    versions = pyenv_root / "versions" / "3.13.99" / "bin"
    versions.mkdir(parents=True)
    (versions / PYTHON).symlink_to(os.path.realpath(sys.executable))

    result = _dev_sh(tmp_path, path, pyenv_root)

    assert result.returncode != 0
    assert "Python" not in result.stderr  # found: the next prerequisite is the one named
    assert "Java" in result.stderr


def test_the_suite_names_chromium_when_it_is_missing(tmp_path: Path) -> None:
    """The admin console's browser tests need Debian's Chromium; `test` checks it first."""
    path = _path_with(tmp_path, PYTHON, "java", "gcloud", "ls")
    env = {**os.environ, "PATH": path, "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "p")}

    result = subprocess.run(
        ["bash", str(ROOT / "dev.sh"), "test"], env=env, capture_output=True, text=True, timeout=30
    )

    assert result.returncode != 0
    assert "Chromium is missing" in result.stderr
    assert "apt-get install chromium" in result.stderr


def test_the_suite_installs_chromium_with_apt_get_as_root(tmp_path: Path) -> None:
    """As root with apt-get (a fresh Debian machine, CI), `test` installs Chromium itself."""
    path = _path_with(tmp_path, PYTHON, "java", "gcloud", "ls")
    asked = tmp_path / "apt-get.log"
    fakes = {
        "id": "#!/bin/sh\necho 0\n",
        # Records what it was asked, then fails: the suite must not go on to run for real.
        "apt-get": f'#!/bin/sh\necho "$@" >> {asked}\n[ "$1" = update ] || exit 100\n',
    }
    for name, script in fakes.items():
        fake = Path(path) / name
        fake.write_text(script)
        fake.chmod(0o755)
    env = {**os.environ, "PATH": path, "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "p")}

    result = subprocess.run(
        ["bash", str(ROOT / "dev.sh"), "test"], env=env, capture_output=True, text=True, timeout=30
    )

    assert asked.read_text().splitlines() == ["update -qq", "install -y -qq chromium"]
    assert result.returncode != 0
    assert "could not install chromium" in result.stderr
