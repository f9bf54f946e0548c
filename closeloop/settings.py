"""Settings: one object, built by a function from the project folder and ``CLOSELOOP_*`` vars."""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from closeloop.errors import ConfigurationError

PROJECT_FILE = "closeloop.yaml"
DEFAULT_WAREHOUSE_FILE = "warehouse.duckdb"
DEFAULT_STATE_FILE = "state.sqlite"


@dataclass(frozen=True)
class Settings:
    """Where a project lives and which engines hold its data.

    ``warehouse_url`` is an Ibis connection URL (``duckdb:///path``, ``postgres://…``,
    ``pyspark://…``); ``state_url`` is a SQLAlchemy URL (``sqlite:///…``, ``postgresql://…``).
    """

    project_dir: Path
    warehouse_url: str
    state_url: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    email_from: str = "success@closeloop.local"
    author: str = "closeloop"  # who definition versions and audit entries are attributed to


def find_project_dir(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``closeloop.yaml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return None


def load_settings(
    project_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings for the project in ``project_dir`` (default: found from the current folder).

    ``CLOSELOOP_WAREHOUSE_URL`` and ``CLOSELOOP_STATE_URL`` override the embedded defaults (a DuckDB
    file and a SQLite file inside the project folder).
    """
    env = os.environ if environ is None else environ
    if project_dir is None:
        env_project = env.get("CLOSELOOP_PROJECT")
        found = Path(env_project) if env_project else find_project_dir(Path.cwd())
        if found is None:
            raise ConfigurationError(
                f"no {PROJECT_FILE} in {Path.cwd()} or any folder above it; "
                "run `closeloop init` to create a project or pass --project DIR"
            )
        project_dir = found
    folder = Path(project_dir).resolve()
    if not (folder / PROJECT_FILE).is_file():
        raise ConfigurationError(
            f"{folder} is not a closeloop project (no {PROJECT_FILE}); "
            f"run `closeloop init {folder}`"
        )
    warehouse_url = (
        env.get("CLOSELOOP_WAREHOUSE_URL") or f"duckdb:///{folder / DEFAULT_WAREHOUSE_FILE}"
    )
    state_url = env.get("CLOSELOOP_STATE_URL") or f"sqlite:///{folder / DEFAULT_STATE_FILE}"
    if "://" not in warehouse_url:
        raise ConfigurationError(
            f"CLOSELOOP_WAREHOUSE_URL={warehouse_url!r} is not a URL; expected e.g. duckdb:///file.duckdb"
        )
    if "://" not in state_url:
        raise ConfigurationError(
            f"CLOSELOOP_STATE_URL={state_url!r} is not a URL; expected e.g. sqlite:///state.sqlite"
        )
    port_text = env.get("CLOSELOOP_SMTP_PORT", "1025")
    if not port_text.isdigit():
        raise ConfigurationError(f"CLOSELOOP_SMTP_PORT={port_text!r} is not a port number")
    return Settings(
        project_dir=folder,
        warehouse_url=warehouse_url,
        state_url=state_url,
        smtp_host=env.get("CLOSELOOP_SMTP_HOST", "127.0.0.1"),
        smtp_port=int(port_text),
        email_from=env.get("CLOSELOOP_EMAIL_FROM", "success@closeloop.local"),
        author=env.get("CLOSELOOP_AUTHOR") or git_user_name(folder) or os_user(),
    )


def git_user_name(folder: Path) -> str | None:
    """``git config user.name`` as seen from ``folder`` (None without git or without a name)."""
    try:
        result = subprocess.run(
            ["git", "config", "user.name"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = result.stdout.strip()
    return name if result.returncode == 0 and name else None


def os_user() -> str:
    """The operating-system user; containers without a passwd entry get "unknown"."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
