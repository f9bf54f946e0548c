"""Settings: one object, built by a function from the project folder and ``CLOSELOOP_*`` vars."""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from closeloop.errors import ConfigurationError
from closeloop.errors import mask_url as mask_url  # printing a warehouse or state URL

PROJECT_FILE = "closeloop.yaml"
DEFAULT_WAREHOUSE_FILE = "warehouse.duckdb"
DEFAULT_STATE_FILE = "state.sqlite"
SECRET_FILE = ".closeloop-secret"
MIN_SECRET_LENGTH = 32
SMTP_SECURITY = ("none", "starttls", "ssl")
SmtpSecurity = Literal["none", "starttls", "ssl"]
# Values people paste from examples: a secret that anyone can read in a README signs nothing.
_PLACEHOLDERS = ("changeme", "changethis", "replaceme", "yoursecret", "placeholder", "example")


@dataclass(frozen=True)
class Settings:
    """Where a project lives and which engines hold its data.

    ``warehouse_url`` is an Ibis connection URL (``duckdb:///path``, ``postgres://…``), or a
    Spark one: ``pyspark://…`` (a session in this process) or ``sc://…`` (Spark Connect,
    Databricks), see ``closeloop.data.spark`` and docs/deploy.md; ``state_url`` is a SQLAlchemy
    URL (``sqlite:///…``, ``postgresql://…``).
    """

    project_dir: Path
    warehouse_url: str
    state_url: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    email_from: str = "success@closeloop.local"
    author: str = "closeloop"  # who definition versions and audit entries are attributed to
    smtp_security: SmtpSecurity = "none"
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    # Signs unsubscribe tokens and webhook bodies; never printed.
    secret: str = field(default="", repr=False)
    webhook_timeout: float = 10.0  # seconds
    # Segment-compatible ingestion (docs/ingestion.md): messages per second per token (0: no
    # limit), and how often the server writes buffered messages to the warehouse (0: never;
    # `closeloop ingest flush` does it).
    ingest_rate: float = 10_000.0
    ingest_flush_interval: float = 1.0  # seconds


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
    security = env.get("CLOSELOOP_SMTP_SECURITY") or "none"
    if security not in SMTP_SECURITY:
        raise ConfigurationError(
            f"CLOSELOOP_SMTP_SECURITY={security!r} is not one of {', '.join(SMTP_SECURITY)}: "
            "starttls upgrades a plain connection (port 587), ssl is TLS from the start (port 465)"
        )
    username = env.get("CLOSELOOP_SMTP_USERNAME") or None
    password = _secret_value(env, "CLOSELOOP_SMTP_PASSWORD")
    if password is not None and username is None:
        raise ConfigurationError(
            "CLOSELOOP_SMTP_PASSWORD is set but CLOSELOOP_SMTP_USERNAME is not: "
            "set the user name to log in with"
        )
    return Settings(
        project_dir=folder,
        warehouse_url=warehouse_url,
        state_url=state_url,
        smtp_host=env.get("CLOSELOOP_SMTP_HOST", "127.0.0.1"),
        smtp_port=int(port_text),
        email_from=env.get("CLOSELOOP_EMAIL_FROM", "success@closeloop.local"),
        author=env.get("CLOSELOOP_AUTHOR") or git_user_name(folder) or os_user(),
        smtp_security=cast(SmtpSecurity, security),
        smtp_username=username,
        smtp_password=password,
        secret=_project_secret(env, folder),
        webhook_timeout=_seconds(env, "CLOSELOOP_WEBHOOK_TIMEOUT", 10.0),
        ingest_rate=_non_negative(env, "CLOSELOOP_INGEST_RATE", 10_000.0, "messages per second"),
        ingest_flush_interval=_non_negative(
            env, "CLOSELOOP_INGEST_FLUSH_INTERVAL", 1.0, "seconds", most=3600.0
        ),
    )


def _secret_value(env: Mapping[str, str], name: str) -> str | None:
    """``name`` from the environment, or the contents of the file ``name_FILE`` names."""
    value, path = env.get(name) or None, env.get(f"{name}_FILE") or None
    if value is not None and path is not None:
        raise ConfigurationError(f"set {name} or {name}_FILE, not both")
    if path is None:
        return value
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigurationError(f"{name}_FILE={path!r} cannot be read: {error.strerror}") from None
    if not text:
        raise ConfigurationError(f"{name}_FILE={path!r} is empty")
    return text


def _project_secret(env: Mapping[str, str], folder: Path) -> str:
    """The secret that signs unsubscribe tokens and webhooks, checked for strength.

    From ``CLOSELOOP_SECRET`` or ``CLOSELOOP_SECRET_FILE``; else the project's secret file,
    created on first use with 32 random bytes so a new project is safe without any setup.
    """
    given = _secret_value(env, "CLOSELOOP_SECRET")
    if given is not None:
        return _strong_secret(given.strip(), "CLOSELOOP_SECRET")
    path = folder / SECRET_FILE
    if not path.exists():
        try:
            created = _create_secret(path)
        except OSError as error:
            raise ConfigurationError(
                f"cannot create the project secret {path}: {error.strerror}; "
                "set CLOSELOOP_SECRET or CLOSELOOP_SECRET_FILE instead"
            ) from None
        if created is not None:
            return created
    try:
        stored = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigurationError(f"{path} cannot be read: {error.strerror}") from None
    return _strong_secret(stored, str(path))


def _create_secret(path: Path) -> str | None:
    """A new random secret at ``path`` (owner-only), or None if another process made one first.

    Written to a temporary file and linked into place, so a process starting at the same moment
    reads either no file or the whole secret, never a half-written one.
    """
    generated = secrets.token_hex(32)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{SECRET_FILE}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(generated + "\n")
        os.link(temporary, path)
    except FileExistsError:
        return None
    finally:
        Path(temporary).unlink()
    return generated


def _strong_secret(value: str, source: str) -> str:
    """``value`` if it can sign anything; a placeholder or a short secret is refused."""
    fix = "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
    letters = "".join(character for character in value.lower() if character.isalnum())
    if any(word in letters for word in _PLACEHOLDERS) or letters in ("secret", "password"):
        raise ConfigurationError(f"the secret in {source} is a placeholder; {fix}")
    if len(value) < MIN_SECRET_LENGTH or len(set(value)) < 8:
        raise ConfigurationError(
            f"the secret in {source} is too weak (at least {MIN_SECRET_LENGTH} characters, "
            f"not a repeated pattern); {fix}"
        )
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise ConfigurationError(f"{name}={text!r} is not a number of seconds between 0 and 600")
    return value


def _non_negative(
    env: Mapping[str, str], name: str, default: float, unit: str, most: float = 1e9
) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= most:
        raise ConfigurationError(f"{name}={text!r} is not a number of {unit} from 0 to {most:g}")
    return value


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
