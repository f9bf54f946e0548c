"""Commands print warehouse and state-store URLs without their credentials: the password of the
URL's user, a ``password=`` query parameter, a Spark Connect/Databricks ``;token=``.

Real commands through Typer's runner (the installed script's code path), against a real
PostgreSQL server and warehouses that refuse the connection.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from closeloop.cli.main import app

SECRET = "s3cret-Pw0rd"
TOKEN = "dapi0123456789abcdef"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    assert CliRunner().invoke(app, ["init", str(folder)]).exit_code == 0
    (folder / "accounts.csv").write_text("account_id,name\na1,Acme\n")
    return folder


@pytest.mark.parametrize(
    ("warehouse_url", "shown"),
    [
        pytest.param(
            f"postgresql://closeloop:{SECRET}@127.0.0.1:9/cs?password={SECRET}&sslmode=disable",
            "postgresql://closeloop:***@127.0.0.1:9/cs?password=***&sslmode=disable",
            id="postgres",
        ),
        pytest.param(
            f"sc://127.0.0.1:9/;token={TOKEN};x-databricks-cluster-id=0412-150235-abcd1234",
            "sc://127.0.0.1:9/;token=***;x-databricks-cluster-id=0412-150235-abcd1234",
            id="databricks-connect",
        ),
    ],
)
def test_a_warehouse_that_cannot_be_reached_is_named_without_its_credentials(
    project: Path, warehouse_url: str, shown: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["import", "accounts", str(project / "accounts.csv"), "--project", str(project)],
        env={"CLOSELOOP_WAREHOUSE_URL": warehouse_url, "COLUMNS": "300"},
    )
    assert result.exit_code == 1, result.output
    assert shown in result.output
    assert SECRET not in result.output and TOKEN not in result.output


@pytest.mark.postgres
def test_migrate_names_the_state_store_without_a_password_parameter(
    project: Path, postgres_url: str
) -> None:
    scheme, _, rest = postgres_url.partition("://")
    with_password = f"{scheme}://{rest}?password={SECRET}&application_name=closeloop"
    result = CliRunner().invoke(
        app,
        ["migrate", "--project", str(project)],
        env={"CLOSELOOP_STATE_URL": with_password, "COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert "password=***" in result.output and "application_name=closeloop" in result.output
    assert SECRET not in result.output
