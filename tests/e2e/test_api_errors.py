"""The API's one error shape on HTTP-level failures (unknown path, wrong method, bad body)."""

from __future__ import annotations

from pathlib import Path

from api_support import api_for

from closeloop.services.project import init_project


def test_http_failures_answer_in_the_one_error_shape(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    init_project(folder)
    with api_for(folder) as api:
        missing = api.get("/api/nothing-here")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"

        # Two routes share /api/jobs (GET lists, POST creates): Allow names both.
        wrong = api.client.patch("/api/jobs", headers=api.headers("admin"))
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET, POST"
        assert wrong.json()["error"]["code"] == "method_not_allowed"

        bad = api.client.post("/api/power", headers=api.headers("viewer"), content=b"{not json")
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["problems"], error
