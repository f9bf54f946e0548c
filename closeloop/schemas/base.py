"""The base of every public model, the number type that maps NaN to null, and pages of items."""

from __future__ import annotations

import math
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _finite_or_none(value: Any) -> Any:
    """NaN and ±infinity (an estimate that does not exist) become None, so JSON says null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# A float that may be absent: NaN or infinity from a computation becomes null in JSON (the
# schema says ``number | null``), so no surface needs its own NaN helper.
Number = Annotated[float | None, BeforeValidator(_finite_or_none)]


class Schema(BaseModel):
    """A public result model: frozen, no unknown fields, the same JSON on every surface."""

    model_config = ConfigDict(frozen=True, extra="forbid")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items``, the ``total`` that match the filters, and where it starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[T]
    total: int = Field(ge=0, description="how many items match the filters, over all pages")
    offset: int = Field(ge=0, description="index of the first item of this page")
    limit: int = Field(ge=1, description="the most items a page holds")


def dump_json(model: BaseModel, *, indent: int | None = 2) -> str:
    """The JSON text of a model, as every surface prints it (aliases, nulls kept)."""
    return model.model_dump_json(indent=indent, by_alias=True)
