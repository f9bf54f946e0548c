"""The job editor: a job's YAML with a form that fills it, live validation with located errors,
the power estimate and a dry run of the draft, save and launch (editor role).

Every step is a POST of the editor's form (the draft's YAML in ``yaml``, the edited job's name in
``editing``, empty for a new job), answered by htmx with a fragment, or with the whole page when
the browser posts without htmx; with ``Accept: application/json`` each answers its schema model.
Save and launch are written to the audit log (``web.POST /editor/save`` …) besides what the write
itself records under ``web:NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from closeloop.errors import CloseloopError, DefinitionErrors
from closeloop.present import editor as view
from closeloop.schemas.editor import EditorFields
from closeloop.schemas.errors import ErrorResponse
from closeloop.schemas.tokens import Role
from closeloop.services import job_drafts
from closeloop.web.errors import body_of, status_of
from closeloop.web.journey_common import now
from closeloop.web.pages import BadParameter, Page, PageRequest, Table, page

FRAGMENTS = {
    "validation": "editor_validation.html.j2",
    "power": "editor_power.html.j2",
    "dry_run": "editor_dry_run.html.j2",
    "saved": "editor_saved.html.j2",
    "launched": "editor_launched.html.j2",
    "yaml": "editor_yaml.html.j2",
    "error": "editor_error.html.j2",
}


def _actor(request: PageRequest) -> str:
    return f"web:{request.actor}"


def _draft(request: PageRequest) -> tuple[str, str | None]:
    """The draft's text and the edited job (None: a new job) from the form."""
    text = request.form.get("yaml") if request.form is not None else None
    if not isinstance(text, str):
        raise BadParameter("the form has no `yaml` field (the job's YAML)")
    return text.replace("\r\n", "\n"), request.query_str("editing")


def _htmx(request: PageRequest) -> bool:
    return request.request.headers.get("hx-request") == "true"


def _answer(request: PageRequest, kind: str, page_result: Page) -> Page:
    """The fragment for htmx, else the whole editor result page around it."""
    htmx = _htmx(request)
    template = FRAGMENTS[kind] if htmx else "editor_result.html.j2"
    context = {**page_result.context, "fragment": FRAGMENTS[kind]}
    return Page(
        model=page_result.model,
        context=context,
        tables=page_result.tables,
        title=page_result.title,
        template=template,
        # htmx swaps only 2xx answers: a refused step is still shown where it was asked for.
        status_code=200 if htmx else page_result.status_code,
    )


def _step(request: PageRequest, kind: str, run: Callable[[], Page]) -> Page:
    """A step that writes: its failure (a name taken, a job gone) is shown in the editor."""
    try:
        return _answer(request, kind, run())
    except CloseloopError as error:
        body = body_of(error)
        failed = Page(
            model=ErrorResponse(error=body),
            context={"error": body},
            title="Refused",
            status_code=status_of(error),
        )
        return _answer(request, "error", failed)


# -- the page ------------------------------------------------------------------------------------


def _editor_page(request: PageRequest, name: str | None) -> Page:
    editor = job_drafts.editor(request.server, name)
    title = f"Edit {name}" if name is not None else "New job"
    return Page(model=editor, context={"editor": editor}, title=title)


@page("/jobs/new", template="editor.html.j2", role=Role.editor, nav="Editor", title="New job")
def new_job(request: PageRequest) -> Page:
    """A new job: a starter draft to change."""
    return _editor_page(request, None)


@page("/jobs/{name}/edit", template="editor.html.j2", role=Role.editor, title="Edit job")
def edit_job(request: PageRequest, name: str) -> Page:
    """An existing job's own lines, comments kept."""
    return _editor_page(request, name)


# -- the steps -----------------------------------------------------------------------------------


@page("/editor/validate", template="editor_result.html.j2", role=Role.editor, methods=["POST"])
def validate(request: PageRequest) -> Page:
    """The draft checked with the whole project, as ``closeloop validate``; nothing written."""
    text, editing = _draft(request)
    validation = job_drafts.validate_draft(request.server.settings, text, editing)
    context: dict[str, object] = {"validation": validation}
    if _htmx(request):  # the form follows the YAML: its fields, swapped in out of band
        context["fields"] = job_drafts.fields_of(text)
    result = Page(model=validation, context=context, title="Validation")
    return _answer(request, "validation", result)


@page("/editor/fields", template="editor_result.html.j2", role=Role.editor, methods=["POST"])
def apply_fields(request: PageRequest) -> Page:
    """The form's fields written into the draft's YAML (the YAML stays the source of truth)."""
    text, editing = _draft(request)
    fields = EditorFields(
        name=request.query_str("name", "") or "",
        hypothesis=request.query_str("hypothesis", "") or "",
        minimum_effect=_float(request, "minimum_effect"),
        audience=request.query_str("audience", "") or "",
        goal=request.query_str("goal", "") or "",
        duration_days=request.query_int("duration_days", minimum=1, maximum=3650),
        holdout=_float(request, "holdout"),
        email_subject=request.query_str("email_subject", "") or "",
        email_template=request.query_str("email_template", "") or "",
    )
    try:
        editor = job_drafts.filled(request.server, text, editing, fields)
    except DefinitionErrors:
        validation = job_drafts.validate_draft(request.server.settings, text, editing)
        result = Page(model=validation, context={"validation": validation}, title="Validation")
        return _answer(request, "validation", result)
    result = Page(model=editor, context={"editor": editor}, title="Draft")
    return _answer(request, "yaml", result)


def _float(request: PageRequest, name: str) -> float | None:
    value = request.query_str(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise BadParameter(f"parameter {name!r}: expected a number, got {value!r}") from None


def _moment(request: PageRequest, name: str) -> datetime | None:
    value = request.query_str(name)
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(
            f"parameter {name!r}: expected a date or date-time like 2025-02-19T12:00, got {value!r}"
        ) from None


@page("/editor/power", template="editor_result.html.j2", role=Role.editor, methods=["POST"])
def power(request: PageRequest) -> Page:
    """The draft's power estimate before launch, from the project's data."""
    text, editing = _draft(request)
    estimate = job_drafts.draft_power(request.server, text, editing)
    tables = {}
    if estimate.plan is not None:
        tables["power"] = Table(view.POWER_COLUMNS, view.power_rows(estimate.plan))
    context = {
        "estimate": estimate,
        "summary": view.power_summary(estimate.plan) if estimate.plan else [],
    }
    result = Page(model=estimate, context=context, tables=tables, title="Power")
    return _answer(request, "power", result)


@page("/editor/dry-run", template="editor_result.html.j2", role=Role.editor, methods=["POST"])
def dry_run(request: PageRequest) -> Page:
    """Who the draft would enroll now (or at ``at``; never after the newest event) and what
    each would get; nothing sent."""
    text, editing = _draft(request)
    moment = _moment(request, "at") or now(request)  # never after the newest event (the demo's)
    preview = job_drafts.draft_dry_run(request.server, text, editing, moment)
    tables = {}
    if preview.dry_run is not None:
        tables["messages"] = Table(view.MESSAGE_COLUMNS, view.message_rows(preview.dry_run))
    result = Page(model=preview, context={"preview": preview}, tables=tables, title="Dry run")
    return _answer(request, "dry_run", result)


@page("/editor/save", template="editor_result.html.j2", role=Role.editor, methods=["POST"])
def save(request: PageRequest) -> Page:
    """Write the draft to its jobs file (other jobs and their comments kept)."""
    text, editing = _draft(request)

    def run() -> Page:
        saved = job_drafts.save_draft(request.server, text, editing, actor=_actor(request))
        status = 200 if saved.written is not None else 422
        job_drafts.audit_write(
            request.server, request.actor, "/editor/save", saved.validation.job or "", status
        )
        return Page(model=saved, context={"saved": saved}, title="Save", status_code=status)

    return _step(request, "saved", run)


@page("/editor/launch", template="editor_result.html.j2", role=Role.editor, methods=["POST"])
def launch(request: PageRequest) -> Page:
    """Launch a saved job (as ``closeloop jobs launch``): its launch checks, then its first tick."""
    name = request.query_str("job")
    if name is None:
        raise BadParameter("say which job to launch (form field `job`)")

    def run() -> Page:
        launched = job_drafts.launch(request.server, name, actor=_actor(request))
        job_drafts.audit_write(request.server, request.actor, "/editor/launch", name, 200)
        context = {"launched": launched, "lines": view.launch_lines(launched)}
        return Page(model=launched, context=context, title="Launch")

    return _step(request, "launched", run)
