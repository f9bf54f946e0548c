"""Definition versions: every attribute, cohort, stage and job is versioned by content hash.

A new row goes into ``definition_versions`` only when a definition's hash differs from its latest
recorded version, so opening a workspace a thousand times records nothing new. The definition is
stored as canonical YAML (fields in model order, defaults left out) so a version's diff against
the previous one reads like the change a person made.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import yaml
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from closeloop.engine import schema
from closeloop.errors import NotFoundError

if TYPE_CHECKING:
    from closeloop.definitions.project import Project
    from closeloop.engine.state import StateStore

KINDS = ("attribute", "cohort", "stage", "job")


@dataclass(frozen=True)
class Change:
    """A definition that got a new version (``previous_version`` is None for a new one)."""

    kind: str
    name: str
    version: int
    content_hash: str
    previous_version: int | None


@dataclass(frozen=True)
class Latest:
    """The latest recorded version of one definition."""

    kind: str
    name: str
    version: int
    content_hash: str
    created_at: datetime
    author: str


@dataclass(frozen=True)
class Version(Latest):
    """One recorded version, with a unified diff against the version before it."""

    definition: str
    diff: str


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (audiences, goals) as block scalars, as people write them."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def canonical_text(model: BaseModel) -> str:
    """The definition as YAML: model field order, defaults omitted (so diffs show real edits)."""
    data = model.model_dump(mode="json", exclude_defaults=True)
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1_000_000,  # never fold a long line: a fold would show up as a change in diffs
    )


def parse_text(text: str) -> dict[str, Any]:
    """A stored definition back as a mapping (for comparing fields across versions)."""
    loaded = yaml.safe_load(text)
    return loaded if isinstance(loaded, dict) else {}


def latest_version(connection: Connection, kind: str, name: str) -> sa.RowMapping | None:
    v = schema.definition_versions
    return (
        connection.execute(
            sa.select(v)
            .where(v.c.kind == kind, v.c.name == name)
            .order_by(v.c.version.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )


def record_definition(
    connection: Connection,
    kind: str,
    name: str,
    content_hash: str,
    model: BaseModel,
    author: str,
    at: datetime,
) -> tuple[int, Change | None]:
    """Record one definition in the caller's transaction: (its latest version, the change if any).

    The unique (kind, name, version) constraint makes two concurrent writers of the same change
    collide instead of both succeeding; the loser's transaction fails and can be retried.
    """
    latest = latest_version(connection, kind, name)
    if latest is not None and latest["content_hash"] == content_hash:
        return int(latest["version"]), None
    previous = int(latest["version"]) if latest is not None else None
    version = (previous or 0) + 1
    connection.execute(
        schema.definition_versions.insert().values(
            kind=kind,
            name=name,
            version=version,
            content_hash=content_hash,
            definition=canonical_text(model),
            created_at=at,
            author=author,
        )
    )
    return version, Change(kind, name, version, content_hash, previous)


def record_definitions(
    store: StateStore, project: Project, author: str, at: datetime
) -> list[Change]:
    """Record a new version of every definition of ``project`` whose content changed."""
    definitions = list(project.definitions())
    try:
        return _record_all(store, definitions, author, at)
    except sa.exc.IntegrityError:
        # Another process recorded the same change between our read and our insert; its rows are
        # now visible, so a second pass records only what is still missing.
        return _record_all(store, definitions, author, at)


def _record_all(
    store: StateStore,
    definitions: Iterable[tuple[str, str, str, BaseModel]],
    author: str,
    at: datetime,
) -> list[Change]:
    changes = []
    with store.engine.begin() as connection:
        # One read of every latest hash: opening a workspace with nothing changed writes nothing
        # and costs one query, however many definitions there are.
        recorded = {
            (row["kind"], row["name"]): row["content_hash"] for row in _latest_rows(connection)
        }
        for kind, name, content_hash, model in definitions:
            if recorded.get((kind, name)) == content_hash:
                continue
            _, change = record_definition(connection, kind, name, content_hash, model, author, at)
            if change is not None:
                changes.append(change)
    return changes


def _names_for(name: str) -> list[str]:
    # Attributes are recorded as "<entity>.<name>"; let people ask for the bare name.
    return [name, f"account.{name}", f"person.{name}"]


def history(store: StateStore, name: str, kind: str | None = None) -> list[Version]:
    """Every recorded version of the definition(s) called ``name``, oldest first, with diffs."""
    v = schema.definition_versions
    query = sa.select(v).where(v.c.name.in_(_names_for(name)))
    if kind is not None:
        query = query.where(v.c.kind == kind)
    with store.engine.connect() as connection:
        rows = connection.execute(query.order_by(v.c.kind, v.c.name, v.c.version)).mappings().all()
    if not rows:
        which = f"{kind} " if kind else ""
        raise NotFoundError(
            f"no recorded versions of {which}{name!r}; versions are recorded when a command "
            "opens the project (e.g. `closeloop definitions list`)"
        )
    versions: list[Version] = []
    previous: dict[tuple[str, str], sa.RowMapping] = {}
    for row in rows:
        key = (row["kind"], row["name"])
        before = previous.get(key)
        label = f"{row['kind']} {row['name']}"
        diff = difflib.unified_diff(
            before["definition"].splitlines(keepends=True) if before is not None else [],
            row["definition"].splitlines(keepends=True),
            fromfile=f"{label} v{before['version']}" if before is not None else "/dev/null",
            tofile=f"{label} v{row['version']}",
        )
        versions.append(
            Version(
                kind=row["kind"],
                name=row["name"],
                version=row["version"],
                content_hash=row["content_hash"],
                created_at=row["created_at"],
                author=row["author"],
                definition=row["definition"],
                diff="".join(diff),
            )
        )
        previous[key] = row
    return versions


def _latest_rows(connection: Connection) -> Sequence[sa.RowMapping]:
    """The newest definition_versions row of each (kind, name)."""
    v = schema.definition_versions
    newest = (
        sa.select(v.c.kind, v.c.name, sa.func.max(v.c.version).label("version"))
        .group_by(v.c.kind, v.c.name)
        .subquery()
    )
    query = sa.select(v).join(
        newest,
        sa.and_(
            v.c.kind == newest.c.kind, v.c.name == newest.c.name, v.c.version == newest.c.version
        ),
    )
    return connection.execute(query).mappings().all()


def latest_versions(store: StateStore) -> dict[tuple[str, str], Latest]:
    """The latest recorded version of every definition, by (kind, name)."""
    with store.engine.connect() as connection:
        rows = _latest_rows(connection)
    return {
        (row["kind"], row["name"]): Latest(
            row["kind"],
            row["name"],
            row["version"],
            row["content_hash"],
            row["created_at"],
            row["author"],
        )
        for row in rows
    }
