"""HMAC-SHA256 signatures on outgoing HTTP bodies, so a receiver knows closeloop sent them.

Every webhook delivery carries three headers:

* ``X-Closeloop-Timestamp``: the Unix time (whole seconds) of this attempt;
* ``X-Closeloop-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the shared secret, of
  the timestamp, a dot and the raw body (``b"1718000000." + body``);
* ``Idempotency-Key``: the same on every retry of one message; a receiver that has seen it may
  answer 2xx and do nothing.

Signing the timestamp with the body lets a receiver refuse a replayed request: check that the
timestamp is recent as well as that the signature matches. With the standard library only::

    import hashlib, hmac, time

    def is_from_closeloop(secret: str, headers, body: bytes) -> bool:
        timestamp = headers["X-Closeloop-Timestamp"]
        expected = "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                                    hashlib.sha256).hexdigest()
        return (hmac.compare_digest(expected, headers["X-Closeloop-Signature"])
                and abs(time.time() - int(timestamp)) <= 300)

Verify the raw bytes as received, before parsing the JSON: re-serialising may change them.
"""

from __future__ import annotations

import hashlib
import hmac

from closeloop.errors import CloseloopError

TIMESTAMP_HEADER = "X-Closeloop-Timestamp"
SIGNATURE_HEADER = "X-Closeloop-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(CloseloopError, ValueError):
    """A request whose signature is missing or wrong, or whose timestamp is not recent."""

    code = "signature_error"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Closeloop-Signature`` value for ``body`` sent at ``timestamp``.

    >>> sign("s3cret", 1718000000, b'{"a":1}')[:11]
    'v1=12fc6d69'
    """
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`SignatureError` unless ``signature_header`` signs ``body`` at a timestamp
    within ``tolerance_seconds`` of ``now`` (either side: clocks drift both ways)."""
    if not timestamp_header:
        raise SignatureError(f"the {TIMESTAMP_HEADER} header is missing")
    if not signature_header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is not whole Unix seconds: {timestamp_header[:40]!r}"
        ) from None
    # Compare before judging the time, so a forged request learns nothing about the clock.
    if not hmac.compare_digest(sign(secret, timestamp, body), signature_header.strip()):
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match the body: wrong secret, or the body was changed"
        )
    skew = now - timestamp
    if abs(skew) > tolerance_seconds:
        when = "old" if skew > 0 else "in the future"
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {abs(skew):.0f}s {when} (tolerance {tolerance_seconds:.0f}s): "
            "a replayed request, or a clock that is off"
        )
