"""Start-up stays light: the console script's module loads no data, statistics or web stack.

Every ``closeloop`` command, ``--help`` included, first imports ``closeloop.cli.main``; what that
import loads is paid by every command. Commands import their services inside their bodies, so
only the command that runs pays for what it uses. Each check runs a fresh interpreter, since this
test process has long since imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Top-level packages that take tenths of a second (or hundreds of MB) to import; none of them may
# load before a command runs.
HEAVY = (
    "alembic",
    "altair",
    "duckdb",
    "fastapi",
    "ibis",
    "jinja2",
    "lifelines",
    "numpy",
    "pandas",
    "polars",
    "pyarrow",
    "pyspark",
    "scipy",
    "sqlalchemy",
    "sqlglot",
    "statsmodels",
    "uvicorn",
    "vl_convert",
    "weasyprint",
    # Not heavy in themselves, but loading them means the models or the expression parser are
    # built for a command that may not need them.
    "pydantic",
    "lark",
)


def _modules_after(code: str) -> set[str]:
    listing = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", f"{code}\n{listing}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # The listing is the last line (a command run before it prints its own output).
    listed = json.loads(completed.stdout.splitlines()[-1])
    return {name.partition(".")[0] for name in listed}


@pytest.mark.parametrize(
    "module",
    [
        "closeloop.cli.main",
        # The modules the CLI builds its options and help from.
        "closeloop.schemas.options",
        "closeloop.services.choices",
        "closeloop.settings",
    ],
)
def test_importing_loads_no_heavy_package(module: str) -> None:
    loaded = _modules_after(f"import {module}")
    assert "closeloop" in loaded  # the check itself looks at the right interpreter
    assert not loaded & set(HEAVY), f"importing {module} loads {sorted(loaded & set(HEAVY))}"


def test_the_check_sees_a_heavy_import() -> None:
    # The models load pydantic: the check above would notice one that leaked into the CLI.
    assert "pydantic" in _modules_after("import closeloop.schemas.tokens")


def test_help_lists_every_command_group() -> None:
    from typer.main import get_command

    from closeloop.cli.main import app

    names = sorted(get_command(app).commands)  # type: ignore[attr-defined]
    completed = subprocess.run(
        [sys.executable, "-m", "closeloop.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    listed = {line.strip("│ ").split(" ")[0] for line in completed.stdout.splitlines()}
    assert {"definitions", "jobs", "outbox", "report", "validate", "users"} <= set(names)
    missing = [name for name in names if name not in listed]
    assert not missing, f"closeloop --help does not list {missing}"
    assert completed.stderr == ""


def test_the_expression_parser_is_kept_in_the_users_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from closeloop.definitions.expressions.parser import _cache_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = Path(str(_cache_file()))
    assert cached.parent == tmp_path / "closeloop"
    parse = "from closeloop.definitions.expressions import parse_expression as p\n"
    parse += 'print(repr(p(\'plan = "pro" and count(event "login") >= 2\')))'
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    built, loaded = (
        subprocess.run(
            [sys.executable, "-c", parse], capture_output=True, text=True, env=env, check=True
        ).stdout
        for _ in range(2)
    )
    assert cached.is_file()  # written by the first run, read by the second
    assert loaded == built and "login" in built
    (tmp_path / "a file").touch()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))
    assert _cache_file() is False  # no cache rather than a failure


# What a simple command on a new project (``closeloop init``: empty warehouse, no job launched)
# may not load: it reads YAML and the state store, and learns from DuckDB itself that there is
# no data to check, so neither the warehouse's query stack nor statistics are needed.
NOT_FOR_SIMPLE_COMMANDS = {
    "validate": ("alembic", "ibis", "numpy", "pandas", "pyarrow", "scipy", "sqlalchemy", "sqlglot"),
    "jobs list": ("alembic", "duckdb", "ibis", "numpy", "pandas", "pyarrow", "scipy", "sqlglot"),
}


@pytest.fixture(scope="module")
def new_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("startup") / "project"
    subprocess.run(
        [sys.executable, "-m", "closeloop.cli.main", "init", str(folder)],
        capture_output=True,
        check=True,
        timeout=120,
        env={key: value for key, value in os.environ.items() if not key.startswith("CLOSELOOP_")},
    )
    return folder


@pytest.mark.parametrize("command", sorted(NOT_FOR_SIMPLE_COMMANDS))
def test_simple_commands_load_no_query_or_statistics_stack(new_project: Path, command: str) -> None:
    run = (
        "from closeloop.cli.main import app\n"
        f"app([*{command.split()!r}, '--project', {str(new_project)!r}], standalone_mode=False)"
    )
    loaded = _modules_after(run)
    assert "closeloop" in loaded
    heavy = sorted(loaded & set(NOT_FOR_SIMPLE_COMMANDS[command]))
    assert not heavy, f"closeloop {command} on a new project loads {heavy}"


def test_a_command_builds_only_what_it_names() -> None:
    from closeloop.cli.main import app

    jobs = app._only("jobs")
    assert jobs is not None and not jobs.registered_commands
    assert [group.name for group in jobs.registered_groups] == ["jobs"]
    validate = app._only("validate")
    assert validate is not None and not validate.registered_groups
    assert len(validate.registered_commands) == 1
    assert app._only("nope") is None and app._only("--help") is None
    assert len(app.registered_groups) > 1  # the app itself is left whole


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "--help"],
        ["jobs", "list", "--help"],
        ["jobs", "list", "--format", "xml"],
        ["jobs"],
        ["validate", "--help"],
        ["validate", "extra"],
        ["nope"],
        ["outcomes", "team", "--help"],
    ],
)
def test_the_one_command_built_says_what_all_of_them_say(argv: list[str]) -> None:
    every = "from typer.main import get_command\nget_command(app)"
    outputs = [
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys\nfrom closeloop.cli.main import app\n{call}"
                "(sys.argv[1:], prog_name='closeloop')",
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
        )
        for call in (every, "app")
    ]
    built_all, built_one = ((run.returncode, run.stdout, run.stderr) for run in outputs)
    assert built_one == built_all
    assert "Usage: closeloop" in built_one[1] + built_one[2]
