"""docs/api.md is what the app serves, and the OpenAPI document names each operation's role."""

from __future__ import annotations

from pathlib import Path

from api_support import api_for

from closeloop.api.reference import PUBLIC, openapi_path, operations, reference_markdown
from closeloop.services.project import init_project

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_api_md_is_generated_from_the_app(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    with api_for(tmp_path / "p") as api:
        expected = reference_markdown(api.client.app)  # type: ignore[arg-type]
    assert DOCS.read_text(encoding="utf-8") == expected, (
        "docs/api.md is out of date: "
        "run `.venv/bin/python -m closeloop.api.reference > docs/api.md`"
    )


def test_the_openapi_document_carries_every_operation_role(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    with api_for(tmp_path / "p") as api:
        document = api.client.get("/openapi.json").json()
        served = list(operations(api.client.app))  # type: ignore[arg-type]
    assert len(served) >= 40
    for method, route, role in served:
        assert route.path is not None
        operation = document["paths"][openapi_path(route.path)][method.lower()]
        assert operation["x-closeloop-role"] == role
        if role == PUBLIC:
            assert operation["description"].startswith("Public: no token needed.")
        else:
            assert operation["description"].startswith(f"Needs the `{role}` role.")
