"""A real SMTP server on loopback that keeps what it receives (for the demo and tests).

Beyond accepting everything, it can behave like the servers a sender meets in production:
offer STARTTLS or speak TLS from the first byte, require a login, refuse some recipients or the
message itself with a given reply.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    """One accepted message with its envelope (who the server was asked to deliver it to)."""

    mail_from: str
    recipients: tuple[str, ...]
    message: Message
    logged_in_as: str | None
    encrypted: bool


@dataclass
class _Collector:
    refuse: Mapping[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.refuse.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.data_reply is not None:
            return self.data_reply
        login = session.auth_data.login.decode() if session.authenticated else None
        received = Received(
            mail_from=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            message=message_from_bytes(envelope.content),
            logged_in_as=login,
            encrypted=server.transport.get_extra_info("ssl_object") is not None,
        )
        with self.lock:
            self.received.append(received)
        return "250 Message accepted for delivery"


class _Logins:
    """aiosmtpd's authenticator: succeeds for the known user name and password only."""

    def __init__(self, logins: Mapping[str, str]) -> None:
        self.logins = logins

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        known = self.logins.get(auth_data.login.decode())
        success = known is not None and known == auth_data.password.decode()
        return AuthResult(success=success, handled=False, auth_data=auth_data)


class SmtpSink:
    """``with SmtpSink() as sink:`` runs an SMTP server on 127.0.0.1:``sink.port``.

    ``refuse`` maps recipient addresses to the reply their ``RCPT TO`` gets (e.g.
    ``"550 5.1.1 no such user"``); ``data_reply`` answers every message with that reply instead
    of accepting it. ``starttls`` offers STARTTLS with that server context (``require_starttls``
    refuses mail before it); ``implicit_tls`` speaks TLS from the first byte instead. ``logins``
    (user name to password) makes logging in required; AUTH is offered only inside TLS unless
    ``auth_require_tls`` is False.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        refuse: Mapping[str, str] | None = None,
        data_reply: str | None = None,
        starttls: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
        logins: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        refusals = {address.lower(): reply for address, reply in (refuse or {}).items()}
        self._collector = _Collector(refuse=refusals, data_reply=data_reply)
        self._server_options: dict[str, Any] = {}
        if starttls is not None:
            self._server_options |= {"tls_context": starttls, "require_starttls": require_starttls}
        if logins is not None:
            self._server_options |= {
                "authenticator": _Logins(logins),
                "auth_required": True,
                "auth_require_tls": auth_require_tls,
            }
        self._implicit_tls = implicit_tls
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self._collector.lock:
            return list(self._collector.received)

    @property
    def messages(self) -> list[Message]:
        return [received.message for received in self.received]

    def __enter__(self) -> SmtpSink:
        self._controller = Controller(
            self._collector,
            hostname=self.host,
            port=self.port,
            ssl_context=self._implicit_tls,
            server_hostname="closeloop-sink",  # skips a slow reverse lookup of the host name
            **self._server_options,
        )
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller.loop.close()
            self._controller = None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
