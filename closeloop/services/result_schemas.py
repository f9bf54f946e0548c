"""JSON Schemas of closeloop's results, generated from the public models and committed in docs/.

One line per result type in :data:`RESULT_SCHEMAS`; ``write_result_schemas(Path("docs"))``
rewrites the files and a test fails when a committed file differs from what the models generate.

>>> "measure.schema.json" in result_schema_texts()
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from closeloop.schemas.account_page import AccountPage
from closeloop.schemas.adoption import Adoption
from closeloop.schemas.board import BoardReport
from closeloop.schemas.churn_review import ChurnReview
from closeloop.schemas.data import QuarantineListing
from closeloop.schemas.definitions import (
    DefinitionHistory,
    DefinitionList,
    Matches,
    Validation,
)
from closeloop.schemas.editor import DraftDryRun, DraftPower, DraftSaved, DraftValidation, JobEditor
from closeloop.schemas.errors import ErrorResponse
from closeloop.schemas.health import (
    AccountHealthReport,
    HealthBacktest,
    HealthScoreList,
    HealthSnapshot,
)
from closeloop.schemas.ingest import ImportReport, IngestAck
from closeloop.schemas.job_page import JobPage, JobSegments
from closeloop.schemas.job_report import JobReport
from closeloop.schemas.jobs import DryRun, JobDetail, JobList, OutboxList
from closeloop.schemas.journey import Signals, StageView
from closeloop.schemas.library import Library
from closeloop.schemas.measurement import Measurement
from closeloop.schemas.overviews import HealthOverview, OutcomePages, StagesOverview
from closeloop.schemas.plan_links import CreatedPlanLink, PlanLinkInfo, PlanLinkList, SharedPlan
from closeloop.schemas.planning import PowerPlan
from closeloop.schemas.plans import GoalsAchieved, Plan, PlanCheck, PlanList
from closeloop.schemas.revenue_outcomes import RevenueOutcomes
from closeloop.schemas.team import TeamOutcomes
from closeloop.schemas.tokens import CreatedToken
from closeloop.schemas.users import UserList
from closeloop.schemas.voc import Divergence, Voc

DIALECT = "https://json-schema.org/draft/2020-12/schema"
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"

# File name in docs/ -> (model, what the JSON is: the command and route that return it).
RESULT_SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "measure.schema.json": (
        Measurement,
        "closeloop measure --format json, POST /api/reports/measure (docs/measure-format.md)",
    ),
    "job-report.schema.json": (
        JobReport,
        "closeloop report JOB --format json, GET /api/jobs/{name}/report",
    ),
    "job-page.schema.json": (
        JobPage,
        "the dashboard's job page /jobs/{name} and its twin /jobs/{name}.json (report: the job "
        "report)",
    ),
    "job-segments.schema.json": (
        JobSegments,
        "the dashboard's segment drill-down /jobs/{name}/segments/{column} and its .json twin",
    ),
    "power-plan.schema.json": (
        PowerPlan,
        "closeloop power --format json, POST /api/power, GET /api/jobs/{name}/power",
    ),
    "library.schema.json": (Library, "closeloop library --format json, GET /api/library"),
    "stage-view.schema.json": (
        StageView,
        "closeloop stage NAME --format json, GET /api/stages/{name}",
    ),
    "signals.schema.json": (Signals, "closeloop signals --format json, GET /api/signals"),
    "churn-review.schema.json": (
        ChurnReview,
        "closeloop churn review --format json, GET /api/churn/review",
    ),
    "health-scores.schema.json": (
        HealthScoreList,
        "closeloop health list --format json, GET /api/health-scores",
    ),
    "account-health.schema.json": (
        AccountHealthReport,
        "closeloop health show ACCOUNT --format json, GET /api/health-scores/accounts/{account_id}",
    ),
    "health-snapshot.schema.json": (
        HealthSnapshot,
        "closeloop health snapshot --format json, POST /api/health-scores/snapshot",
    ),
    "health-backtest.schema.json": (
        HealthBacktest,
        "closeloop health backtest --format json, GET /api/health-scores/backtest",
    ),
    "plan.schema.json": (
        Plan,
        "closeloop plans show|create|add-objective|update|renegotiate --format json, "
        "GET/POST /api/plans/{id}…",
    ),
    "plan-list.schema.json": (PlanList, "closeloop plans list --format json, GET /api/plans"),
    "plan-check.schema.json": (PlanCheck, "closeloop plans check --format json"),
    "goals-achieved.schema.json": (
        GoalsAchieved,
        "closeloop plans achieved --format json, GET /api/plans/achieved",
    ),
    "stages-overview.schema.json": (StagesOverview, "the dashboard's /stages (its JSON twin)"),
    "health-overview.schema.json": (HealthOverview, "the dashboard's /health (its JSON twin)"),
    "outcome-pages.schema.json": (OutcomePages, "the dashboard's /outcomes (its JSON twin)"),
    "plan-link.schema.json": (
        CreatedPlanLink,
        "closeloop plans share --format json, POST /api/plans/{id}/links (the link is shown once)",
    ),
    "plan-link-info.schema.json": (
        PlanLinkInfo,
        "closeloop plans unshare --format json, DELETE /api/plans/{id}/links/{link_id}",
    ),
    "plan-links.schema.json": (
        PlanLinkList,
        "closeloop plans links --format json, GET /api/plans/{id}/links",
    ),
    "shared-plan.schema.json": (
        SharedPlan,
        "the customer's read-only page /shared/plans/{token} and its JSON twin",
    ),
    "matches.schema.json": (
        Matches,
        "closeloop explain|cohort --format json, POST /api/explain, GET /api/cohorts/{name}",
    ),
    "validation.schema.json": (Validation, "closeloop validate --format json, POST /api/validate"),
    "definitions.schema.json": (
        DefinitionList,
        "closeloop definitions list --format json, GET /api/definitions",
    ),
    "definition-history.schema.json": (
        DefinitionHistory,
        "closeloop definitions history NAME --format json, GET /api/definitions/{name}/history",
    ),
    "job-list.schema.json": (JobList, "closeloop jobs list --format json, GET /api/jobs"),
    "job-detail.schema.json": (
        JobDetail,
        "closeloop jobs show JOB --format json, GET /api/jobs/{name}",
    ),
    "dry-run.schema.json": (
        DryRun,
        "closeloop dry-run JOB --format json, POST /api/jobs/{name}/dry-run",
    ),
    "outbox.schema.json": (OutboxList, "closeloop outbox list --format json, GET /api/outbox"),
    "quarantine.schema.json": (
        QuarantineListing,
        "closeloop quarantine list --format json, GET /api/quarantine",
    ),
    "token.schema.json": (
        CreatedToken,
        "closeloop tokens create --format json, POST /api/tokens (the token is shown once)",
    ),
    "user-list.schema.json": (UserList, "closeloop users list --format json"),
    "ingest-ack.schema.json": (IngestAck, "POST /v1/track|identify|group|page|screen|batch"),
    "import-report.schema.json": (ImportReport, "POST /v1/import/{table}"),
    "error.schema.json": (
        ErrorResponse,
        "every API failure (docs/api.md); its code is the one the CLI prints in brackets",
    ),
    "adoption.schema.json": (
        Adoption,
        "closeloop outcomes adoption --format json, GET /api/outcomes/adoption",
    ),
    "team-outcomes.schema.json": (
        TeamOutcomes,
        "closeloop outcomes team --format json, GET /api/outcomes/team",
    ),
    "revenue-outcomes.schema.json": (
        RevenueOutcomes,
        "closeloop outcomes revenue --format json, GET /api/outcomes/revenue",
    ),
    "voc.schema.json": (Voc, "closeloop outcomes voc --format json, GET /api/outcomes/voc"),
    "divergence.schema.json": (
        Divergence,
        "closeloop outcomes divergence --format json, GET /api/outcomes/divergence",
    ),
    "board.schema.json": (
        BoardReport,
        "closeloop board --format json, GET /api/board, the dashboard's home page as JSON",
    ),
    "account-page.schema.json": (
        AccountPage,
        "the dashboard's account page /accounts/{account_id} and its twin "
        "/accounts/{account_id}.json",
    ),
    "job-editor.schema.json": (
        JobEditor,
        "the dashboard's job editor /jobs/new and /jobs/{name}/edit (.json), POST /editor/fields",
    ),
    "draft-validation.schema.json": (
        DraftValidation,
        "the job editor's live validation, POST /editor/validate (Accept: application/json)",
    ),
    "draft-power.schema.json": (
        DraftPower,
        "the job editor's power estimate of a draft, POST /editor/power",
    ),
    "draft-dry-run.schema.json": (
        DraftDryRun,
        "the job editor's dry run of a draft, POST /editor/dry-run",
    ),
    "draft-saved.schema.json": (
        DraftSaved,
        "the job editor's save, POST /editor/save (422 with the problems when not written)",
    ),
}


def result_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one result file, as the model serialises."""
    model, description = RESULT_SCHEMAS[name]
    schema = model.model_json_schema(mode="serialization", by_alias=True)
    summary = f"{description}. {schema.pop('description', '')}".strip()
    generated = f"generated from {model.__module__}.{model.__name__}; do not edit"
    return {"$schema": DIALECT, "$comment": generated, "description": summary, **schema}


def result_schema_texts() -> dict[str, str]:
    """Each file's name and exact text (stable: sorted keys, trailing newline)."""
    return {
        name: json.dumps(result_schema(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name in RESULT_SCHEMAS
    }


def write_result_schemas(folder: Path = DOCS_DIR) -> list[Path]:
    """Write every result schema into ``folder`` (created if missing); return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in result_schema_texts().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
