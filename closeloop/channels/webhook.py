"""``send: webhook``: POST a signed JSON body to a URL.

The body names the job, step, arm and enrollment, carries the account's attributes and the step's
``data`` (string values are inline templates), and is rendered at tick time into the outbox. The
sender serialises it the same way on every attempt (compact, sorted keys) and signs each attempt
with HMAC-SHA256 (:mod:`closeloop.channels.signing` says how a receiver verifies it); the
``Idempotency-Key`` header is the same on every retry.

``url: env:NAME`` reads the URL from the environment variable ``NAME`` when sending, so a URL that
embeds a token is in neither the YAML nor the outbox.

Answers: 2xx is delivered; 408, 429, 5xx, timeouts and connection failures are retried; any other
answer is permanent (dead-lettered), including redirects, which are never followed: a redirect to
another host would carry the signed body somewhere nobody configured.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from closeloop.channels.base import (
    OutboundMessage,
    Receipt,
    RenderContext,
    Rendered,
    StepModel,
    render_problems,
)
from closeloop.channels.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from closeloop.channels.templates import TemplateSet
from closeloop.errors import ChannelError, ConfigurationError, UndeliverableError

if TYPE_CHECKING:
    import httpx

WEBHOOK = "webhook"
EVENT = "closeloop.action"
ENV_PREFIX = "env:"
USER_AGENT = "closeloop"
RESPONSE_EXCERPT_CHARS = 200
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RETRYABLE_STATUSES = frozenset({408, 429})


class WebhookStep(StepModel):
    """POST the unit's account, job and step as JSON to ``url``, signed with HMAC-SHA256."""

    send: Literal["webhook"]
    url: str = Field(
        min_length=1,
        description="http(s) URL, or env:NAME to read it from the environment at send time",
    )
    data: dict[str, str | float | bool] = Field(
        default_factory=dict,
        description="extra fields for the body; string values are inline templates",
    )


def check(step: WebhookStep, templates: TemplateSet, sample: RenderContext) -> list[str]:
    return render_problems(render, step, sample, templates, url_problem(step.url))


def render(step: WebhookStep, context: RenderContext, templates: TemplateSet) -> Rendered:
    account = {key: json_safe(value) for key, value in context.account.items()}
    account.setdefault("name", None)
    body = {
        "event": EVENT,
        "idempotency_key": context.idempotency_key,
        "job": context.job_name,
        "step": context.step_index,
        "arm": context.arm,
        "enrollment_id": context.enrollment_id,
        "account": account,
        "person_id": context.person_id,
        "data": render_data(step.data, context, templates),
        "sent_for": context.at.isoformat(),
    }
    return Rendered({"url": step.url, "body": body})


def render_data(
    data: Mapping[str, str | float | bool], context: RenderContext, templates: TemplateSet
) -> dict[str, str | float | bool]:
    """A step's ``data`` with its string values rendered as inline templates."""
    variables = context.template_variables()
    return {
        key: templates.render_string(value, variables, label=f"{context.where()} data.{key}")
        if isinstance(value, str)
        else value
        for key, value in data.items()
    }


def json_safe(value: Any) -> Any:
    """``value`` as JSON writes it faithfully: dates and times as ISO strings, Decimal as float,
    missing values (None, NaN, NaT) as null, numpy scalars as Python numbers, anything else
    unknown as its ``str``.

    >>> json_safe({"renewal": date(2025, 3, 1), "arr": Decimal("1200.50"), "x": float("nan")})
    {'renewal': '2025-03-01', 'arr': 1200.5, 'x': None}
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((json_safe(item) for item in value), key=str)
    if _is_missing(value):  # pandas' NaT is a datetime that is not equal to itself
        return None
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return json_safe(item())
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # arrays and other values without a truth value
        return False


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook URL (``None`` if it can): an http(s) URL with a host, or
    ``env:NAME`` with a valid environment variable name."""
    if url.startswith(ENV_PREFIX):
        name = url.removeprefix(ENV_PREFIX)
        if not _ENV_NAME.match(name):
            return (
                f"url {url!r}: after env: comes an environment variable name "
                "(letters, digits and _, not starting with a digit), e.g. env:CRM_WEBHOOK_URL"
            )
        return None
    if not is_http_url(url):
        return f"url {url!r} is not an http(s) URL with a host: write https://host/path or env:NAME"
    return None


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an ``http://`` or ``https://`` URL with a host and nothing odd in it."""
    if any(character.isspace() for character in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def redact_url(url: str) -> str:
    """``https://host/…``: enough of a URL for a message, without a path or query that may hold
    a token."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{host}/…" if parts.scheme and host else "(an invalid URL)"


def encode_body(body: Any) -> bytes:
    """The exact bytes sent and signed: compact JSON with sorted keys, ASCII only."""
    try:
        return json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise UndeliverableError(f"the payload is not JSON: {error}") from None


def post_json(
    client: httpx.Client,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    target: str,
) -> httpx.Response:
    """POST ``content`` and sort the outcome: a 2xx response is returned; a failure that may pass
    raises ChannelError and one that will not raises UndeliverableError. ``target`` names the
    receiver in messages (never with the full URL, which may hold a token)."""
    import httpx

    try:
        response = client.post(
            url, content=content, headers=headers, timeout=timeout, follow_redirects=False
        )
    except httpx.TimeoutException as error:
        raise ChannelError(
            f"{target} did not answer within {timeout:g}s ({type(error).__name__})"
        ) from error
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        raise UndeliverableError(f"{target}: the URL cannot be used: {error}") from error
    except httpx.TransportError as error:
        raise ChannelError(f"cannot reach {target}: {type(error).__name__}: {error}") from error
    status = response.status_code
    if 200 <= status < 300:
        return response
    excerpt = response.text[:RESPONSE_EXCERPT_CHARS].strip() or "(empty body)"
    if status in _RETRYABLE_STATUSES or status >= 500:
        retry_after = response.headers.get("Retry-After")
        wait = f" (Retry-After: {retry_after[:20]})" if retry_after else ""
        raise ChannelError(f"{target} answered HTTP {status}{wait}: {excerpt}")
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        elsewhere = redact_url(location) if is_http_url(location) else "another path"
        raise UndeliverableError(
            f"{target} answered HTTP {status}, a redirect to {elsewhere}; closeloop does not "
            "follow redirects: configure the final URL"
        )
    raise UndeliverableError(f"{target} refused the message with HTTP {status}: {excerpt}")


class WebhookSender:
    """POSTs the outbox's webhook payloads, each attempt signed with ``secret``.

    ``environ`` (default: ``os.environ``, read at each send) resolves ``env:NAME`` URLs; ``clock``
    gives the Unix time that goes into the timestamp header. A ``client`` passed in stays the
    caller's to close; one the sender creates is closed by :meth:`close`.
    """

    name = WEBHOOK

    def __init__(
        self,
        secret: str,
        *,
        timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ConfigurationError("webhooks are signed: the webhook signing secret is empty")
        self._secret = secret
        self._timeout = timeout
        self._environ = environ
        self._client = client
        self._owns_client = client is None
        self._clock = clock

    def send(self, message: OutboundMessage) -> Receipt:
        try:
            url = self._resolve(str(message.payload["url"]))
            body = message.payload["body"]
        except KeyError as missing:
            raise UndeliverableError(f"webhook payload lacks {missing}") from None
        content = encode_body(body)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, content),
            IDEMPOTENCY_HEADER: message.idempotency_key,
        }
        post_json(
            self._http(),
            url,
            content,
            headers,
            timeout=self._timeout,
            target=f"the webhook at {redact_url(url)}",
        )
        return Receipt()

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> httpx.Client:
        import httpx  # here: loading it costs every command that only reads definitions

        if self._client is None:
            self._client = httpx.Client(
                timeout=self._timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
            )
        return self._client

    def _resolve(self, url: str) -> str:
        if not url.startswith(ENV_PREFIX):
            if not is_http_url(url):
                raise UndeliverableError(f"webhook url {url!r} is not an http(s) URL with a host")
            return url
        name = url.removeprefix(ENV_PREFIX)
        environ = os.environ if self._environ is None else self._environ
        resolved = environ.get(name, "").strip()
        if not resolved:
            raise UndeliverableError(
                f"the webhook URL comes from the environment variable {name}, which is not set: "
                "set it to the receiver's https:// URL where the dispatcher runs"
            )
        if not is_http_url(resolved):  # the value is not shown: it may hold a token
            raise UndeliverableError(
                f"the environment variable {name} does not hold an http(s) URL with a host"
            )
        return resolved
