"""Sources in place (``sources:`` in closeloop.yaml): mapped tables give what imported copies give.

Two projects with the same definitions (the ``closeloop init`` starter: attributes, cohorts,
stages and the "Integration nudge" job with a 20% holdout) read the same customers: one from
imported canonical tables, the other from the warehouse's own tables and views, with other column
names and types (integer ids, a decimal ARR, zoned times, times as text with an offset, JSON
properties), in other schemas (``analytics.product_events``, a view ``crm.contacts``). Each has its
own warehouse and state store; subscriptions are imported in both (a mixed project). Every
expression, cohort, stage count, tick and job report must come out identical. Runs on a DuckDB file
and, when available, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import yaml
from psycopg import sql

from closeloop.data.compiler import cohort_members, matching_units
from closeloop.data.importer import import_file
from closeloop.data.warehouse import Warehouse
from closeloop.definitions.expressions import Entity, parse_expression
from closeloop.definitions.models import ProjectConfig, SourceMapping
from closeloop.errors import ConfigurationError, DataImportError, DefinitionError
from closeloop.services import definitions, engine_runs, journey, reports
from closeloop.services.project import Workspace, init_project, open_workspace
from closeloop.services.results import job_report_model
from closeloop.settings import load_settings
from support import Backends, embedded_backends

POSTGRES_ENV = "CLOSELOOP_TEST_POSTGRES_URL"
JOB = "Integration nudge"
FIRST_TICK = datetime(2024, 4, 24)
TICK_EVERY = timedelta(days=4)  # the audience looks back 14 days, so every 4 days finds everyone
TICKS = 19  # to 2024-07-06, when every enrollment has had its 30 days
ACCOUNTS = 120

# The documented example (docs/sources.md), plus people from a view in another schema.
SOURCES = """
sources:
  accounts: {table: crm_accounts, columns: {account_id: id, name: company, created_at: signup, segment: tier, renewal_date: renewal}}
  people:
    table: crm.contacts
    columns: {person_id: contact_id, account_id: company_id, name: full_name, created_at: created}
  events:   {table: analytics.product_events, columns: {event_id: uid, account_id: acct, person_id: user_id, name: evt, timestamp: ts, value: amount, properties: props}}
"""  # noqa: E501 (the YAML reads best on one line per table)

ACCOUNT_EXPRESSIONS = (
    'signup_date within last 14 days and count(event "integration_connected") = 0',
    'segment in ("enterprise", "mid_market") and arr >= 20000',
    'employees > 200 or plan has no value and region != "emea"',
    'count(event "login" in last 7 days) >= 3',
    'count(event "invoice_paid" where method = "card" and value > 300) >= 1',
    'first(event "integration_connected") within last 10 days',
    'last(event "login") more than 5 days ago',
    "renewal_date within next 200 days",
    'all people where role = "admin"',
    "count(people) >= 2 and seat_activation >= 50%",
    'in cohort "Enterprise" and not in stage "Onboarding"',
    'entered job "Integration nudge" and not completed job "Integration nudge"',
    "days_since_last_login <= 3 or logins_30d >= 6",
)
PERSON_EXPRESSIONS = (
    'role = "admin" and count(event "login") >= 2',
    'account.segment = "enterprise" and created_at within last 20 days',
)
EXPRESSIONS = [(text, Entity.ACCOUNT) for text in ACCOUNT_EXPRESSIONS] + [
    (text, Entity.PERSON) for text in PERSON_EXPRESSIONS
]
AS_OF = datetime(2024, 5, 20, 12)  # signups, completions and stages in full swing


# -- the customers, once, as plain rows -------------------------------------------------------


@dataclass(frozen=True)
class Customers:
    accounts: list[dict[str, Any]]
    people: list[dict[str, Any]]
    events: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]


def _report_json(report: reports.JobReport) -> dict[str, Any]:
    """The report's public JSON (what `closeloop report --format json` prints, sans freshness)."""
    return job_report_model(report).model_dump(mode="json")


def _customers() -> Customers:
    rng = random.Random(20240501)
    accounts, people, events, subscriptions = [], [], [], []
    for number in range(1, ACCOUNTS + 1):
        signup = datetime(2024, 4, 20) + timedelta(minutes=rng.randrange(40 * 24 * 60))
        arr = Decimal(rng.randrange(100_000, 6_000_000)) / 100 if rng.random() < 0.9 else None
        accounts.append(
            {
                "id": number,
                "company": f"Company {number}",
                "signup": signup,
                "tier": rng.choice(["enterprise", "mid_market", "self_serve"]),
                "plan": rng.choice(["starter", "pro", None]),
                "arr": arr,
                "employees": rng.randrange(1, 800),
                "region": rng.choice(["na", "emea", "apac"]),
                "renewal": date(2024, 6, 1) + timedelta(days=rng.randrange(365))
                if rng.random() < 0.7
                else None,
                "health": round(rng.random(), 3),
            }
        )
        for k in range(rng.randrange(1, 4)):
            people.append(
                {
                    "contact_id": f"c{number}-{k}",
                    "company_id": number,
                    "email": f"user{k}@company{number}.test",
                    "full_name": f"User {k} of {number}",
                    "role": "admin" if k == 0 or rng.random() < 0.3 else "member",
                    "created": signup + timedelta(days=k, hours=rng.randrange(24)),
                }
            )
        contacts = [p["contact_id"] for p in people if p["company_id"] == number]

        # (event name, time, amount, properties)
        happened: list[tuple[str, datetime, float | None, dict[str, str]]] = []
        for _ in range(rng.randrange(0, 12)):
            happened.append(
                ("login", signup + timedelta(minutes=rng.randrange(1, 40 * 24 * 60)), None, {})
            )
        if rng.random() < 0.5:
            at = signup + timedelta(hours=rng.randrange(2, 20 * 24))
            happened.append(("integration_connected", at, None, {}))
        for _ in range(rng.randrange(0, 3)):
            paid = signup + timedelta(days=rng.randrange(1, 30))
            method = {"method": rng.choice(["card", "wire"])}
            happened.append(("invoice_paid", paid, float(rng.randrange(50, 900)), method))
        for name, at, amount, props in happened:
            events.append(
                {
                    "uid": f"ev{len(events):05d}",
                    "acct": number,
                    "user_id": rng.choice(contacts),
                    "evt": name,
                    "ts": at,
                    "amount": amount,
                    "props": json.dumps(props) if props else None,
                }
            )
        subscriptions.append(
            {
                "subscription_id": f"s{number}",
                "account_id": str(number),
                "plan": accounts[-1]["plan"],
                "start_date": signup.date(),
                "mrr": float(rng.randrange(50, 5000)),
                "billing_period_months": 1,
            }
        )
    return Customers(accounts, people, events, subscriptions)


CUSTOMERS = _customers()


# -- two warehouses: imported copies, and the source system's own tables ----------------------


@contextmanager
def _postgres_database() -> Iterator[str]:
    server = os.environ[POSTGRES_ENV]
    name = f"closeloop_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass(frozen=True)
class Pair:
    imported: Path  # project folders
    mapped: Path
    imported_backends: Backends
    mapped_backends: Backends


@pytest.fixture
def pair(backends: Backends, tmp_path: Path) -> Iterator[Pair]:
    with ExitStack() as stack:
        if backends.name == "embedded":
            for name in ("imported", "mapped"):
                (tmp_path / name).mkdir()
            imported = embedded_backends(tmp_path / "imported")
            mapped = embedded_backends(tmp_path / "mapped")
        else:
            other = stack.enter_context(_postgres_database())
            imported, mapped = backends, Backends("postgres", other, other)
        folders = []
        for name, where in (("imported", imported), ("mapped", mapped)):
            folder = tmp_path / name / "project"
            init_project(folder, name=name)
            if name == "mapped":
                with (folder / "closeloop.yaml").open("a", encoding="utf-8") as config:
                    config.write(SOURCES)
            folders.append(folder)
            with Warehouse.connect(where.warehouse_url) as warehouse:
                (_create_sources if name == "mapped" else _import_copies)(warehouse)
        yield Pair(folders[0], folders[1], imported, mapped)


def _import_copies(warehouse: Warehouse) -> None:
    warehouse.ensure_tables()
    c = CUSTOMERS
    columns = {
        "accounts": {
            "account_id": [str(a["id"]) for a in c.accounts],
            "name": [a["company"] for a in c.accounts],
            "created_at": [a["signup"] for a in c.accounts],
            "segment": [a["tier"] for a in c.accounts],
            "plan": [a["plan"] for a in c.accounts],
            "arr": [None if a["arr"] is None else float(a["arr"]) for a in c.accounts],
            "employees": [a["employees"] for a in c.accounts],
            "region": [a["region"] for a in c.accounts],
            "renewal_date": [a["renewal"] for a in c.accounts],
        },
        "people": {
            "person_id": [p["contact_id"] for p in c.people],
            "account_id": [str(p["company_id"]) for p in c.people],
            "email": [p["email"] for p in c.people],
            "name": [p["full_name"] for p in c.people],
            "role": [p["role"] for p in c.people],
            "created_at": [p["created"] for p in c.people],
        },
        "events": {
            "event_id": [e["uid"] for e in c.events],
            "account_id": [str(e["acct"]) for e in c.events],
            "person_id": [e["user_id"] for e in c.events],
            "name": [e["evt"] for e in c.events],
            "timestamp": [e["ts"] for e in c.events],
            "value": [e["amount"] for e in c.events],
            "properties": [e["props"] for e in c.events],
        },
    }
    for table, rows in columns.items():
        warehouse.append(table, warehouse.arrow_for(table, rows))
    _import_subscriptions(warehouse)


def _import_subscriptions(warehouse: Warehouse) -> None:
    rows = {
        name: [s.get(name) for s in CUSTOMERS.subscriptions] for name in CUSTOMERS.subscriptions[0]
    }
    warehouse.append("subscriptions", warehouse.arrow_for("subscriptions", rows))


def _create_sources(warehouse: Warehouse) -> None:
    """The source system's tables, shaped its own way; then subscriptions imported beside them."""
    backend, c = warehouse.backend, CUSTOMERS
    utc = pa.timestamp("us", tz="UTC")
    accounts = pa.table(
        {
            "id": pa.array([a["id"] for a in c.accounts], pa.int32()),
            "company": [a["company"] for a in c.accounts],
            "signup": pa.array([a["signup"].replace(tzinfo=UTC) for a in c.accounts], utc),
            "tier": [a["tier"] for a in c.accounts],
            "plan": pa.array([a["plan"] for a in c.accounts], pa.string()),
            "arr": pa.array([a["arr"] for a in c.accounts], pa.decimal128(12, 2)),
            "employees": pa.array([a["employees"] for a in c.accounts], pa.int32()),
            "region": [a["region"] for a in c.accounts],
            "renewal": pa.array([a["renewal"] for a in c.accounts], pa.date32()),
            "health": [a["health"] for a in c.accounts],
        }
    )
    backend.create_table("crm_accounts", accounts)
    backend.create_database("crm", force=True)
    contacts = pa.table(
        {
            "contact_id": [p["contact_id"] for p in c.people] + ["gone"],
            "company_id": pa.array([p["company_id"] for p in c.people] + [1], pa.int32()),
            "email": [p["email"] for p in c.people] + ["gone@company1.test"],
            "full_name": [p["full_name"] for p in c.people] + ["Left"],
            "role": [p["role"] for p in c.people] + ["admin"],
            "created": pa.array([p["created"] for p in c.people] + [None], pa.timestamp("us")),
            "deleted": [False] * len(c.people) + [True],
        }
    )
    backend.create_table("contacts_raw", contacts, database="crm")
    backend.raw_sql(
        "CREATE VIEW crm.contacts AS SELECT contact_id, company_id, email, full_name, role, "
        "created FROM crm.contacts_raw WHERE NOT deleted"
    )
    backend.create_database("analytics", force=True)
    events = pa.table(
        {
            "uid": [e["uid"] for e in c.events],
            "acct": pa.array([e["acct"] for e in c.events], pa.int64()),
            "user_id": [e["user_id"] for e in c.events],
            "evt": [e["evt"] for e in c.events],
            # Times as text in another zone: 11:00+02:00 is 09:00 UTC.
            "ts": [f"{(e['ts'] + timedelta(hours=2)).isoformat()}+02:00" for e in c.events],
            "amount": pa.array([e["amount"] for e in c.events], pa.float64()),
            "props": pa.array([e["props"] for e in c.events], pa.string()),
        }
    )
    backend.create_table("product_events", events, database="analytics")
    json_type = "JSONB USING props::jsonb" if warehouse.dialect == "postgres" else "JSON"
    backend.raw_sql(f"ALTER TABLE analytics.product_events ALTER COLUMN props TYPE {json_type}")
    mapped = Warehouse(backend, warehouse.url, _sources())
    mapped.ensure_tables()
    _import_subscriptions(mapped)


def _sources() -> dict[str, SourceMapping]:
    return dict(ProjectConfig.model_validate({"name": "x", **yaml.safe_load(SOURCES)}).sources)


# -- helpers ----------------------------------------------------------------------------------


@contextmanager
def _both(pair: Pair) -> Iterator[tuple[Workspace, Workspace]]:
    with (
        open_workspace(pair.imported, environ=pair.imported_backends.environ()) as imported,
        open_workspace(pair.mapped, environ=pair.mapped_backends.environ()) as mapped,
    ):
        yield imported, mapped


def _tick_both(imported: Workspace, mapped: Workspace) -> None:
    for day in range(TICKS):
        at = FIRST_TICK + day * TICK_EVERY
        got = [
            [
                (r.job_name, r.entered, r.completed, r.exited, r.outbox)
                for r in engine_runs.tick(w, at, launch=True)
            ]
            for w in (imported, mapped)
        ]
        assert got[0] == got[1], at


def _units(workspace: Workspace, text: str, as_of: datetime, target: Entity) -> list[Any]:
    expression = parse_expression(text)
    catalog = workspace.project.catalog
    units = matching_units(expression, workspace.warehouse, as_of, catalog, target)
    return sorted(units.to_pyarrow().to_pylist(), key=lambda row: sorted(row.items()))


def _members(workspace: Workspace, name: str, as_of: datetime) -> list[Any]:
    loaded = workspace.project.cohort(name)
    members = cohort_members(loaded, workspace.warehouse, as_of, workspace.project.catalog)
    return sorted(members.to_pyarrow().to_pylist(), key=lambda row: sorted(row.items()))


# -- tests ------------------------------------------------------------------------------------


def test_the_documented_example_gives_what_imported_copies_give(pair: Pair) -> None:
    """Ticks and the job report (also segmented by ``tier``, a column only the source has);
    then every expression (job memberships too: the report published the enrollments), cohort
    and stage count."""
    with _both(pair) as (imported, mapped):
        assert "accounts" not in mapped.warehouse.backend.list_tables()  # nothing was created
        _tick_both(imported, mapped)
        enrollments = [
            sorted(
                (r["account_id"], r["arm"], r["entered_at"], r["completed_at"], r["exited_at"])
                for r in w.store.enrollments_table(JOB).to_pylist()
            )
            for w in (imported, mapped)
        ]
        assert enrollments[0] == enrollments[1]
        assert {arm for _, arm, *_ in enrollments[0]} == {"holdout", "treatment"}
        want = _report_json(reports.job_report(imported, JOB))
        got = _report_json(reports.job_report(mapped, JOB))
        assert got == want
        assert want["measurement"]["segments"]  # type: ignore[index]
        by_tier = _report_json(reports.job_report(mapped, JOB, segment_by=("tier",)))
        tier_segments = by_tier["measurement"]["segments"]  # type: ignore[index]
        assert {row["column"] for row in tier_segments} == {"tier"}
        renamed = [{**row, "column": "segment"} for row in tier_segments]
        assert renamed == want["measurement"]["segments"]  # type: ignore[index]

        for text, target in EXPRESSIONS:
            want_units = _units(imported, text, AS_OF, target)
            assert _units(mapped, text, AS_OF, target) == want_units, text
            assert 0 < len(want_units) < ACCOUNTS, text  # each one tells accounts apart
        for as_of in (AS_OF, FIRST_TICK + TICKS * TICK_EVERY):
            for name in imported.project.cohorts:
                assert _members(mapped, name, as_of) == _members(imported, name, as_of), name
            for name in imported.project.stages:
                stage = journey.stage_view(imported, name, as_of, accounts=True)
                same = journey.stage_view(mapped, name, as_of, accounts=True)
                assert same == stage, (name, as_of)
                # Nobody completes init's Onboarding here (no teammate_invited events), so
                # nobody enters Adoption; Onboarding itself must have entrants.
                assert stage.entered > 0 or as_of != AS_OF or name == "Adoption", name
        # The engine's facts stay closeloop's own, even when the customers are read in place.
        owned = set(mapped.warehouse.backend.list_tables())
        assert {"closeloop_enrollments", "attribute_history", "subscriptions"} <= owned
        assert not {"accounts", "people", "events"} & owned


def test_an_extra_source_column_is_an_attribute(pair: Pair) -> None:
    healthy = sorted(
        str(a["id"])
        for a in CUSTOMERS.accounts
        if a["tier"] == "enterprise" and a["health"] >= 0.5 and a["signup"] <= AS_OF
    )
    with open_workspace(pair.mapped, environ=pair.mapped_backends.environ()) as mapped:
        assert mapped.project.catalog.account_attributes["health"] == "number"
        assert mapped.project.catalog.account_attributes["tier"] == "string"
        assert mapped.project.catalog.person_attributes["full_name"] == "string"
        text = 'tier = "enterprise" and health >= 0.5'
        rows = _units(mapped, text, AS_OF, Entity.ACCOUNT)
        assert [row["account_id"] for row in rows] == healthy
        explained = definitions.explain(mapped, text, AS_OF, sample=3)
        assert explained.count == len(healthy)
        assert explained.sample[0]["segment"] == "enterprise"
    with open_workspace(pair.imported, environ=pair.imported_backends.environ()) as imported:
        assert "health" not in imported.project.catalog.account_attributes


def test_writes_into_a_mapped_table_are_refused(pair: Pair) -> None:
    with open_workspace(pair.mapped, environ=pair.mapped_backends.environ()) as workspace:
        warehouse = workspace.warehouse
        rows = warehouse.arrow_for("accounts", {"account_id": ["new"], "created_at": [AS_OF]})
        for write in (warehouse.append, warehouse.replace):
            with pytest.raises(DataImportError) as refused:
                write("accounts", rows)
            assert str(refused.value) == (
                "accounts is read in place from crm_accounts (sources: in closeloop.yaml); "
                "import into the source system instead"
            )
        # An import is refused before the file is even read: nothing quarantined, no work done.
        missing = pair.mapped / "no-such-file.csv"
        with pytest.raises(DataImportError, match="read in place from crm_accounts"):
            import_file(warehouse, "accounts", missing)
        assert warehouse.table("accounts").count().execute() == ACCOUNTS
        # Imported tables beside the mapped ones still take rows.
        warehouse.append(
            "churn_reasons",
            warehouse.arrow_for(
                "churn_reasons",
                {
                    "churn_id": ["x"],
                    "account_id": ["1"],
                    "churned_at": [AS_OF],
                    "reason": ["price"],
                },
            ),
        )


def _mapping_problems(problems: tuple[DefinitionError, ...]) -> list[DefinitionError]:
    return [problem for problem in problems if problem.message.startswith("sources")]


def _break_mapping(folder: Path) -> list[str]:
    """A misspelt view, a source column that does not exist, a canonical column that does not
    exist; the lines of the broken closeloop.yaml."""
    config = folder / "closeloop.yaml"
    broken = (
        config.read_text(encoding="utf-8")
        .replace("table: crm.contacts", "table: crm.contact")
        .replace("name: evt", "name: event_name")
        .replace("segment: tier", "segment: tier, colour: tier")
    )
    config.write_text(broken, encoding="utf-8")
    return broken.splitlines()


def _at(lines: list[str], needle: str) -> tuple[int, int]:
    for number, line in enumerate(lines, start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


def test_validate_points_at_a_missing_table_or_column(pair: Pair) -> None:
    environ = pair.mapped_backends.environ()
    settings = load_settings(pair.mapped, environ)
    # (Checks of expressions against the data may warn on their own; these are the mapping's.)
    assert _mapping_problems(definitions.validate_project(settings).problems) == []
    assert definitions.source_problems(settings) == ()
    lines = _break_mapping(pair.mapped)

    problems = definitions.source_problems(settings)
    assert [p.severity for p in problems] == ["error"] * 3, [p.render() for p in problems]
    found = {
        (problem.message.split(":")[0], problem.location.line, problem.location.column)
        for problem in problems
        if problem.location is not None
    }
    assert found == {
        ("sources.accounts.columns.colour", *_at(lines, "colour")),
        ("sources.people.table", *_at(lines, "crm.contact")),
        ("sources.events.columns.name", *_at(lines, "event_name")),
    }
    messages = " | ".join(p.render() for p in problems)
    assert "the warehouse has no table or view crm.contact" in messages
    assert "did you mean 'contacts'?" in messages
    assert "analytics.product_events has no column 'event_name'" in messages
    assert "its columns: uid, acct, user_id, evt, ts, amount, props" in messages
    assert "accounts has no column 'colour'" in messages
    # A command on the broken project says what is wrong in one line, never a traceback.
    with (
        pytest.raises(ConfigurationError) as refused,
        open_workspace(pair.mapped, environ=environ) as workspace,
    ):
        workspace.warehouse.table("people")
    assert "\n" not in str(refused.value)
    assert "sources.people.table" in str(refused.value)


def test_validate_lists_the_mapping_problems_with_the_others(pair: Pair) -> None:
    settings = load_settings(pair.mapped, pair.mapped_backends.environ())
    _break_mapping(pair.mapped)
    problems = definitions.validate_project(settings).problems
    assert [p.message.split(":")[0] for p in _mapping_problems(problems)] == [
        "sources.accounts.columns.colour",
        "sources.people.table",
        "sources.events.columns.name",
    ]


def test_text_that_is_no_time_is_an_error_and_repeated_ids_a_warning(pair: Pair) -> None:
    settings = load_settings(pair.mapped, pair.mapped_backends.environ())
    with Warehouse.connect(settings.warehouse_url) as warehouse:
        backend = warehouse.backend
        backend.raw_sql(
            "INSERT INTO analytics.product_events (uid, acct, evt, ts) VALUES "
            "('bad', 1, 'login', 'last tuesday')"
        )
        backend.raw_sql(
            "INSERT INTO crm_accounts (id, company, signup) SELECT id, company, "
            "signup FROM crm_accounts WHERE id <= 2"
        )
    problems = {p.message.split(":")[0]: p for p in definitions.source_problems(settings)}
    assert set(problems) == {
        "sources.events.columns.timestamp",
        "sources.accounts.columns.account_id",
    }
    timestamp = problems["sources.events.columns.timestamp"]
    assert timestamp.severity == "error"
    assert "analytics.product_events.ts cannot be read as a timestamp" in timestamp.message
    assert "last tuesday" in timestamp.message
    repeated = problems["sources.accounts.columns.account_id"]
    assert repeated.severity == "warning"
    assert "2 rows of crm_accounts repeat another row's id" in repeated.message
