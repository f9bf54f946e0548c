"""The expression grammar's cache: private to the test run, and never a reason for a command to
fail (a cache that cannot be read or written means the parser tables are built instead)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lark
import pytest

SCRIPT = Path(sys.executable).parent / "closeloop"
CACHE_NAME = f"expression-grammar-lark-{lark.__version__}.pickle"


def test_the_suite_caches_in_a_temporary_folder_that_subprocesses_inherit() -> None:
    folder = Path(os.environ["XDG_CACHE_HOME"])
    assert folder.is_relative_to(Path(tempfile.gettempdir()))
    assert not folder.is_relative_to(Path.home())
    seen = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['XDG_CACHE_HOME'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert seen == str(folder)


def _folder_that_is_a_file(cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("not a folder")  # the cache folder cannot be made


def _cache_file_that_is_a_folder(cache: Path) -> None:
    (cache / "closeloop" / CACHE_NAME).mkdir(parents=True)  # cannot be read nor written


def _cache_file_with_garbage(cache: Path) -> None:
    (cache / "closeloop").mkdir(parents=True, exist_ok=True)
    (cache / "closeloop" / CACHE_NAME).write_bytes(b"\x00\x01 not a pickle \xff" * 40)


def _cache_file_cut_short(cache: Path) -> None:
    """A cache whose writer died half-way (a full disk): the right first line, then nothing."""
    (cache / "closeloop").mkdir(parents=True, exist_ok=True)
    (cache / "closeloop" / CACHE_NAME).write_bytes(b"0" * 64 + b"\n\x80\x04")


@pytest.mark.parametrize(
    "spoil",
    [
        _folder_that_is_a_file,
        _cache_file_that_is_a_folder,
        _cache_file_with_garbage,
        _cache_file_cut_short,
    ],
    ids=lambda spoil: spoil.__name__.strip("_"),
)
def test_a_cache_that_cannot_be_used_never_fails_a_command(
    validated: Validated, tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    spoiled = tmp_path / "xdg"
    spoil(spoiled)
    for _ in range(2):  # the second run meets whatever the first one left
        result = _validate(validated.project, spoiled)
        assert (result.returncode, result.stdout, result.stderr) == (
            0,
            validated.stdout,
            validated.stderr,
        )


@dataclass(frozen=True)
class Validated:
    """A new project and what `closeloop validate` says about it with a working cache."""

    project: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory) -> Validated:
    folder = tmp_path_factory.mktemp("grammar-cache")
    project = folder / "project"
    subprocess.run([SCRIPT, "init", str(project)], capture_output=True, check=True)
    good = folder / "good-cache"
    result = _validate(project, good)
    assert result.returncode == 0, result.stderr
    assert (good / "closeloop" / CACHE_NAME).is_file()
    return Validated(project, result.stdout, result.stderr)


def _validate(project: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "200"}
    return subprocess.run(
        [SCRIPT, "validate", "--project", str(project)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
