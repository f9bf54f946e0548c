"""Settings for delivery: SMTP security and login, the project secret, timeouts, masked URLs.

Integration tests because the project secret is a file the settings create in the project
folder; environments are passed explicitly, never read from the test process.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from closeloop.errors import ConfigurationError
from closeloop.settings import SECRET_FILE, Settings, load_settings, mask_url

STRONG = "4f1c2a9be07d3865c1aa0f52e9d4b7716e2f90ab"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "closeloop.yaml").write_text("name: t\n")
    return tmp_path


def _settings(project: Path, **environ: str) -> Settings:
    return load_settings(project, {"CLOSELOOP_AUTHOR": "test", **environ})


def test_defaults_and_a_generated_secret_kept_private(project: Path) -> None:
    settings = _settings(project)
    assert (settings.smtp_security, settings.smtp_username, settings.smtp_password) == (
        "none",
        None,
        None,
    )
    assert settings.webhook_timeout == 10.0
    secret_file = project / SECRET_FILE
    assert len(settings.secret) == 64 and int(settings.secret, 16) >= 0
    assert secret_file.read_text().strip() == settings.secret
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert _settings(project).secret == settings.secret  # created once, then read
    assert sorted(path.name for path in project.iterdir()) == [SECRET_FILE, "closeloop.yaml"]


def test_secrets_and_passwords_never_print(project: Path) -> None:
    settings = _settings(
        project,
        CLOSELOOP_SECRET=STRONG,
        CLOSELOOP_SMTP_USERNAME="ada",
        CLOSELOOP_SMTP_PASSWORD="hunter2-hunter2",
    )
    assert settings.secret == STRONG and settings.smtp_password == "hunter2-hunter2"
    assert STRONG not in repr(settings) and "hunter2" not in repr(settings)
    assert "smtp_username='ada'" in repr(settings)
    assert not (project / SECRET_FILE).exists()  # a given secret is not written anywhere


def test_secrets_can_come_from_files(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mounted = tmp_path_factory.mktemp("run-secrets")
    (mounted / "secret").write_text(STRONG + "\n")
    (mounted / "smtp").write_text("from-a-file\n")
    settings = _settings(
        project,
        CLOSELOOP_SECRET_FILE=str(mounted / "secret"),
        CLOSELOOP_SMTP_USERNAME="ada",
        CLOSELOOP_SMTP_PASSWORD_FILE=str(mounted / "smtp"),
    )
    assert (settings.secret, settings.smtp_password) == (STRONG, "from-a-file")
    with pytest.raises(ConfigurationError, match="CLOSELOOP_SECRET_FILE='/nowhere' cannot be read"):
        _settings(project, CLOSELOOP_SECRET_FILE="/nowhere")
    with pytest.raises(ConfigurationError, match="set CLOSELOOP_SECRET or CLOSELOOP_SECRET_FILE"):
        _settings(project, CLOSELOOP_SECRET=STRONG, CLOSELOOP_SECRET_FILE=str(mounted / "secret"))


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("changeme", "is a placeholder"),
        ("secret", "is a placeholder"),
        ("CHANGE-ME-CHANGE-ME-CHANGE-ME-CHANGE-ME", "is a placeholder"),
        ("your-secret-here-0123456789abcdef0123", "is a placeholder"),
        ("0123456789abcdef", "is too weak"),
        ("a" * 64, "is too weak"),
    ],
)
def test_weak_or_placeholder_secrets_are_refused(project: Path, secret: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=f"CLOSELOOP_SECRET {problem}") as raised:
        _settings(project, CLOSELOOP_SECRET=secret)
    assert "token_hex(32)" in str(raised.value)


def test_a_weak_secret_file_is_refused_with_its_path(project: Path) -> None:
    (project / SECRET_FILE).write_text("changeme\n")
    with pytest.raises(ConfigurationError, match=f"{SECRET_FILE} is a placeholder"):
        _settings(project)


def test_smtp_settings_that_cannot_work_fail_at_start_up(project: Path) -> None:
    assert _settings(project, CLOSELOOP_SMTP_SECURITY="starttls").smtp_security == "starttls"
    with pytest.raises(ConfigurationError, match="'tls' is not one of none, starttls, ssl"):
        _settings(project, CLOSELOOP_SMTP_SECURITY="tls")
    with pytest.raises(ConfigurationError, match="CLOSELOOP_SMTP_USERNAME is not"):
        _settings(project, CLOSELOOP_SMTP_PASSWORD="hunter2-hunter2")


@pytest.mark.parametrize("text", ["abc", "0", "-1", "601", "nan"])
def test_a_webhook_timeout_must_be_a_sensible_number_of_seconds(project: Path, text: str) -> None:
    with pytest.raises(ConfigurationError, match="CLOSELOOP_WEBHOOK_TIMEOUT"):
        _settings(project, CLOSELOOP_WEBHOOK_TIMEOUT=text)
    assert _settings(project, CLOSELOOP_WEBHOOK_TIMEOUT="2.5").webhook_timeout == 2.5


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40ss:w@rd@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("duckdb:///tmp/warehouse.duckdb", "duckdb:///tmp/warehouse.duckdb"),
        ("postgresql://h/db?user=u&password=pw", "postgresql://h/db?user=u&password=***"),
        ("sqlite:///state.sqlite?password=pw", "sqlite:///state.sqlite?password=***"),
        ("postgresql://u:pw@[::1/db", "postgresql://u:***@[::1/db"),  # unparseable: still masked
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
