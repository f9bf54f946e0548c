"""Property-based tests of the API against its own OpenAPI (schemathesis): for every operation,
generated requests never get a server error and every response conforms to the documented
schema, status codes, content type and headers. Bounded: a fixed number of examples per
operation on a small simulated company with a live job.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from api_support import Api, api_for
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import FlakyFailure, FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from typer.testing import CliRunner

from closeloop.cli.main import app as cli
from closeloop.schemas.tokens import Role

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CLOSELOOP_SCHEMATHESIS_EXAMPLES", "8"))
# Conformance, not latency (bench/ measures that): schemathesis' 10 s default failed a decade of
# monthly NRR (GET /api/outcomes/divergence?periods=120) on a loaded 2-core machine.
REQUEST_TIMEOUT = 120


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A project with 300 simulated accounts, 60 days of events and a live job."""
    folder = tmp_path_factory.mktemp("api") / "company"
    environ = {
        "CLOSELOOP_SECRET": secrets.token_hex(32),
        "CLOSELOOP_WAREHOUSE_URL": None,
        "CLOSELOOP_STATE_URL": None,
        "CLOSELOOP_PROJECT": None,
    }
    runner = CliRunner(env=environ)
    for args in (
        ["init", str(folder), "--name", "company"],
        ["simulate", "--project", str(folder), "--accounts", "300", "--days", "60", "--run-jobs"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    settings_env = {"CLOSELOOP_SECRET": str(environ["CLOSELOOP_SECRET"])}
    with api_for(folder, settings_env) as api:
        yield api


def _operations(served: Api) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", served.client.app)
    # Revoking tokens by generated names or ids could revoke the token this test uses.
    schema = schema.exclude(path_regex=r"^/api/tokens/")
    return [result.ok() for result in schema.get_all_operations()]


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]


def test_every_operation_conforms_to_the_openapi(served: Api) -> None:
    """Each operation gets its own bounded Hypothesis run; every failure is collected, so one
    run reports all operations that fail (schemathesis' pytest plugin does not run on pytest 9,
    so the operations are driven here through their Hypothesis strategies)."""
    headers = served.headers(Role.admin)
    failures: list[str] = []
    operations = _operations(served)
    assert len(operations) >= 10, [op.label for op in operations]
    seconds: dict[str, float] = {}
    for operation in operations:
        started = time.perf_counter()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT)

        for attempt in (1, 2):
            try:
                conforms()
            except (FlakyFailure, FlakyStrategyDefinition) as error:
                # Hypothesis could not replay its own failing example (seen once: a SystemError
                # inside CPython's ast while Hypothesis described a strategy); run it again, and
                # report it only if it fails twice.
                if attempt == 2:
                    failures.append(f"{operation.label}: {type(error).__name__}: {error}"[:3000])
                continue
            except (Exception, BaseExceptionGroup) as error:  # collect every operation's failure
                failures.append(f"{operation.label}: {type(error).__name__}: {error}"[:3000])
            break
        seconds[operation.label] = time.perf_counter() - started
    # Shown with -s: an operation that takes minutes here is a performance bug (GET
    # /api/outcomes/voc over 1900-9998 was one), not a reason to lower the examples.
    slowest = sorted(seconds.items(), key=lambda item: -item[1])[:12]
    print("slowest operations:", *(f"{s:7.1f} s  {label}" for label, s in slowest), sep="\n")
    assert not failures, "\n\n".join(failures)


def test_the_openapi_document_is_served_and_names_every_route(served: Api) -> None:
    document = served.client.get("/openapi.json").json()
    assert document["info"]["title"] == "closeloop"
    routes = {route.path for route in served.client.app.routes if hasattr(route, "methods")}  # type: ignore[attr-defined]
    documented = set(document["paths"])
    assert routes - {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"} <= documented
    assert Path
