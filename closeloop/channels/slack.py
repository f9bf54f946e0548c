"""``send: slack``: a message to the account owner's Slack channel through an incoming webhook.

Routing is configuration, not YAML secrets: closeloop.yaml's ``slack:`` names the environment
variables that hold incoming-webhook URLs (``default``, and one per owner), and the sender gets
``routes`` built from them: ``"default"`` and ``"owner:<owner name>"`` (:func:`route_key`) to URL.
A step rendered for an owner without a route of their own goes to the default.

The text is an inline template. Slack reads ``&``, ``<`` and ``>`` as markup, so the rendered text
has them escaped: an account called ``<Acme & Co>`` cannot inject a link or a mention. Links come
from ``link:`` instead, appended as ``<url|account name>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field

from closeloop.channels.base import (
    OutboundMessage,
    Receipt,
    RenderContext,
    Rendered,
    StepModel,
    render_problems,
)
from closeloop.channels.signing import IDEMPOTENCY_HEADER
from closeloop.channels.templates import TemplateSet
from closeloop.channels.webhook import USER_AGENT, is_http_url, post_json
from closeloop.errors import ConfigurationError, RenderError, UndeliverableError

if TYPE_CHECKING:
    import httpx

SLACK = "slack"
DEFAULT_ROUTE = "default"
OWNER_ROUTE_PREFIX = "owner:"


class SlackStep(StepModel):
    """Post ``text`` (an inline template) to the owner's channel (``to: owner``) or the default."""

    send: Literal["slack"]
    text: str = Field(min_length=1, description="an inline template, e.g. '{{ account.name }} …'")
    to: Literal["owner", "default"] = Field(
        default="owner",
        description="owner: the channel mapped to the account's owner (else the default); "
        "default: the project's default channel",
    )
    link: str | None = Field(
        default=None,
        description="an inline template for an http(s) URL (e.g. the account in your CRM), "
        "appended to the text as a link labelled with the account's name",
    )


def route_key(owner: str) -> str:
    """The ``routes`` key of an owner's incoming webhook: ``owner:<name>``."""
    return f"{OWNER_ROUTE_PREFIX}{owner}"


def routes_from_environment(
    default_variable: str | None,
    owner_variables: Mapping[str, str],
    environ: Mapping[str, str],
) -> dict[str, str]:
    """The sender's ``routes`` from closeloop.yaml's ``slack:`` (variable names) and the
    environment (their URLs). Every variable that is unset or not an http(s) URL is named in one
    ConfigurationError."""
    wanted = {route_key(owner): variable for owner, variable in owner_variables.items()}
    if default_variable:
        wanted[DEFAULT_ROUTE] = default_variable
    routes: dict[str, str] = {}
    problems: list[str] = []
    for route, variable in wanted.items():
        url = environ.get(variable, "").strip()
        if not url:
            problems.append(f"{variable} (for {route}) is not set")
        elif not is_http_url(url):
            problems.append(f"{variable} (for {route}) is not an http(s) URL")
        else:
            routes[route] = url
    if problems:
        raise ConfigurationError(
            "Slack incoming webhooks: "
            + "; ".join(problems)
            + ": set each to its https://hooks.slack.com/… URL"
        )
    return routes


def check(step: SlackStep, templates: TemplateSet, sample: RenderContext) -> list[str]:
    return render_problems(render, step, sample, templates)


def render(step: SlackStep, context: RenderContext, templates: TemplateSet) -> Rendered:
    variables = context.template_variables()
    where = context.where()
    text = templates.render_string(step.text, variables, label=f"{where} text").strip()
    if not text:
        return Rendered(skip="the Slack text rendered empty")
    text = escape(text)
    url = None
    if step.link is not None:
        url = templates.render_string(step.link, variables, label=f"{where} link").strip() or None
        if url is not None:
            if not is_http_url(url):
                raise RenderError(f"{where} link: {url[:200]!r} is not an http(s) URL")
            label = context.account.get("name") or context.account["account_id"]
            text += f"\n<{_link_target(url)}|{escape(str(label))}>"
    owner = _owner(context.account)
    route = route_key(owner) if step.to == "owner" and owner else DEFAULT_ROUTE
    return Rendered({"route": route, "owner": owner, "text": text, "account_url": url})


def escape(text: str) -> str:
    """Text as Slack shows it literally: ``&``, ``<`` and ``>`` are its markup characters.

    >>> escape("<Acme & Co>")
    '&lt;Acme &amp; Co&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_target(url: str) -> str:
    # "|" would end the URL inside <url|label>; Slack unescapes the rest before following it.
    return escape(url.replace("|", quote("|")))


def _owner(account: Mapping[str, Any]) -> str | None:
    owner = account.get("owner")
    if not isinstance(owner, str):  # unset, or a missing value read from the warehouse
        return None
    return owner.strip() or None


class SlackSender:
    """Posts the outbox's Slack payloads to the incoming webhook of their route.

    ``routes`` maps ``"default"`` and ``"owner:<name>"`` to incoming-webhook URLs (see
    :func:`routes_from_environment`). A ``client`` passed in stays the caller's to close; one the
    sender creates is closed by :meth:`close`.
    """

    name = SLACK

    def __init__(
        self,
        routes: Mapping[str, str],
        *,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        wrong = sorted(route for route, url in routes.items() if not is_http_url(url))
        if wrong:  # the URLs are secrets: name the routes only
            raise ConfigurationError(
                f"Slack routes without an http(s) webhook URL: {', '.join(wrong)}"
            )
        self._routes = dict(routes)
        self._timeout = timeout
        self._client = client
        self._owns_client = client is None

    def send(self, message: OutboundMessage) -> Receipt:
        try:
            text = str(message.payload["text"])
        except KeyError as missing:
            raise UndeliverableError(f"slack payload lacks {missing}") from None
        route = str(message.payload.get("route") or DEFAULT_ROUTE)
        url, used = self._url(route)
        content = json.dumps({"text": text, "unfurl_links": False}).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: message.idempotency_key,
        }
        post_json(
            self._http(),
            url,
            content,
            headers,
            timeout=self._timeout,
            target=f"the Slack webhook for {used}",
        )
        if used != route:
            return Receipt(detail=f"no Slack webhook for {route}: sent to the default")
        return Receipt()

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def _url(self, route: str) -> tuple[str, str]:
        """The webhook URL for ``route`` and the route actually used (an owner without a webhook
        of their own falls back to the default)."""
        url = self._routes.get(route)
        if url:
            return url, route
        url = self._routes.get(DEFAULT_ROUTE)
        if url:
            return url, DEFAULT_ROUTE
        if route.startswith(OWNER_ROUTE_PREFIX):
            owner = route.removeprefix(OWNER_ROUTE_PREFIX)
            raise UndeliverableError(
                f"no Slack webhook for owner {owner!r} and no default: "
                "set slack.default in closeloop.yaml"
            )
        raise UndeliverableError("no default Slack webhook: set slack.default in closeloop.yaml")

    def _http(self) -> httpx.Client:
        import httpx  # here: loading it costs every command that only reads definitions

        if self._client is None:
            self._client = httpx.Client(
                timeout=self._timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
            )
        return self._client
