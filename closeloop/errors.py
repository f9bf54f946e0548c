"""One error hierarchy for closeloop.

Every error closeloop raises on purpose derives from :class:`CloseloopError` and from the builtin
it most resembles, so callers may catch either. Messages say what was wrong, where, and how to fix
it; :class:`SourceLocation` renders the offending line with a caret under the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The password of a URL's user: up to the last "@" before the path (a password may hold an "@").
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^\s/]*@")
# A parameter in a query string (``?a=1&b=2``) or a ``;``-separated list (Spark Connect, JDBC).
_URL_PARAMETER = re.compile(r"(?P<head>[?&;](?P<key>[A-Za-z0-9_.\-]+)=)(?P<value>[^&;#\s'\"]*)")
# Parameter names that hold credentials: passwords, tokens, keys, secrets, signatures.
_SECRET_NAME = re.compile(r"pass|pwd|token|secret|credential|signature|key$|^sig$", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: the password of its user, and
    parameters named for a secret (``password=``, ``token=``, ``access_token=``, ``api_key=``...)
    in its query string or in a ``;`` list (``sc://host:443/;token=...``).

    Every surface renders errors and URLs through this, so a database password or an access token
    never reaches a terminal, a log or an API response.

    >>> redact("cannot reach postgresql://ada:s3cret@db:5432/cs")
    'cannot reach postgresql://ada:***@db:5432/cs'
    >>> redact("no Spark at 'sc://dbc-1.cloud.databricks.com:443/;token=dapi0f3;x-databricks-cluster-id=0412'")
    "no Spark at 'sc://dbc-1.cloud.databricks.com:443/;token=***;x-databricks-cluster-id=0412'"
    """
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _URL_PARAMETER.sub(_mask_parameter, text)


def mask_url(url: str) -> str:
    """One URL with its credentials masked (:func:`redact`), fit to print or log.

    >>> mask_url("snowflake://ada:s3cret@xy12345.eu-west-1/analytics/public?warehouse=wh")
    'snowflake://ada:***@xy12345.eu-west-1/analytics/public?warehouse=wh'
    >>> mask_url("postgresql://db.internal/cs?user=ada&password=s3cret")
    'postgresql://db.internal/cs?user=ada&password=***'
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return redact(url)
    authority_end = min((rest.find(end) for end in "/?#" if end in rest), default=len(rest))
    user_end = rest.rfind("@", 0, authority_end)  # the last "@": a password may hold one
    user_info, rest = (rest[:user_end], rest[user_end:]) if user_end >= 0 else ("", rest)
    user, colon, _ = user_info.partition(":")
    masked_user = f"{user}:***" if colon else user_info
    return f"{scheme}://{masked_user}" + _URL_PARAMETER.sub(_mask_parameter, rest)


def _mask_parameter(match: re.Match[str]) -> str:
    if match["value"] and _SECRET_NAME.search(match["key"]):
        return f"{match['head']}***"
    return match[0]


@dataclass(frozen=True)
class SourceLocation:
    """A place in a text: file (if any), 1-based line and column, and the text of that line."""

    line: int
    column: int
    file: str | None = None
    source_line: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.file}:" if self.file else ""
        return f"{prefix}{self.line}:{self.column}"

    def caret(self) -> str:
        """The source line with a caret under the column, or "" when the text is unknown."""
        if self.source_line is None:
            return ""
        line = self.source_line.rstrip("\n")
        return f"    {line}\n    {' ' * max(self.column - 1, 0)}^"


class CloseloopError(Exception):
    """Root of every error closeloop raises on purpose."""

    code = "closeloop_error"


class ConfigurationError(CloseloopError, ValueError):
    """Settings or project configuration that cannot work (bad URL, missing project)."""

    code = "configuration_error"


class LocatedError(CloseloopError, ValueError):
    """An error tied to a place in a text (a YAML file, an expression)."""

    code = "located_error"

    def __init__(
        self,
        message: str,
        location: SourceLocation | None = None,
        hint: str = "",
        *,
        severity: str = "error",
    ) -> None:
        self.message = message
        self.location = location
        self.hint = hint
        self.severity = severity  # "error" or "warning" (validation reports both)
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.location}: {self.message}" if self.location else self.message
        parts = [head]
        if self.location is not None and self.location.caret():
            parts.append(self.location.caret())
        if self.hint:
            parts.append(f"    hint: {self.hint}")
        return "\n".join(parts)


class DefinitionError(LocatedError):
    """A definition (closeloop.yaml, jobs, cohorts) that is invalid."""

    code = "definition_error"


class ExpressionError(DefinitionError):
    """An expression that does not parse or does not type-check."""

    code = "expression_error"


class DefinitionErrors(CloseloopError, ValueError):  # noqa: N818 (a list of DefinitionError)
    """Several definition problems reported at once (validation collects them all)."""

    code = "definition_errors"

    def __init__(self, errors: list[DefinitionError]) -> None:
        self.errors = errors
        super().__init__("\n".join(error.render() for error in errors))


class DataImportError(CloseloopError, ValueError):
    """A file that cannot be imported at all (unknown table, missing required columns)."""

    code = "import_error"


class NotFoundError(CloseloopError, LookupError):
    """A named thing (job, table, arm) that does not exist."""

    code = "not_found"

    def __str__(self) -> str:  # LookupError would repr() a single argument
        return str(self.args[0]) if self.args else "not found"


class StateError(CloseloopError, RuntimeError):
    """The state store is in a condition that forbids the operation (e.g. not migrated)."""

    code = "state_error"


class ChannelError(CloseloopError, RuntimeError):
    """A channel could not deliver a message; the dispatcher retries it with backoff."""

    code = "channel_error"


class UndeliverableError(ChannelError):
    """A message that can never be delivered as it is (no valid recipient, a refusal the receiver
    says is permanent): dead-lettered at once instead of retried."""

    code = "undeliverable"


class RenderError(CloseloopError, ValueError):
    """An action that cannot be rendered for one unit (a template error, a missing variable, a
    sandbox refusal); the message says the job, step, account and template line."""

    code = "render_error"


class ConcurrencyError(StateError):
    """Another process changed the same job at the same time (e.g. two ticks); nothing was
    recorded by this one."""

    code = "concurrency_error"


class WarehouseNotEmptyError(CloseloopError, RuntimeError):
    """The warehouse already holds data an operation must not mix with (e.g. simulated rows)."""

    code = "warehouse_not_empty"
