"""The base of every public model, the number type that maps NaN to null, and pages of items."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator


def _finite_or_none(value: Any) -> Any:
    """NaN and ±infinity (an estimate that does not exist) become None, so JSON says null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# A float that may be absent: NaN or infinity from a computation becomes null in JSON (the
# schema says ``number | null``), so no surface needs its own NaN helper.
Number = Annotated[float | None, BeforeValidator(_finite_or_none)]


def utc(value: Any) -> Any:
    """A naive date-time (the stores keep UTC without a zone) as an aware UTC one, so JSON
    carries the offset RFC 3339 requires (``2024-06-01T00:00:00Z``)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


class Schema(BaseModel):
    """A public result model: frozen, no unknown fields, the same JSON on every surface.

    Every date-time field is UTC with its offset in JSON, whatever the store returned.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _utc_times(cls, value: Any) -> Any:
        return utc(value)


T = TypeVar("T")


class Page(Schema, Generic[T]):
    """One page of a list: ``items``, the ``total`` that match the filters, and where it starts."""

    items: list[T]
    total: int = Field(ge=0, description="how many items match the filters, over all pages")
    offset: int = Field(ge=0, description="index of the first item of this page")
    limit: int = Field(ge=1, description="the most items a page holds")


def dump_json(model: BaseModel, *, indent: int | None = 2) -> str:
    """The JSON text of a model, as every surface prints it (aliases, nulls kept)."""
    return model.model_dump_json(indent=indent, by_alias=True)
