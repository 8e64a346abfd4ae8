"""Completion callbacks: a job enqueued with ``callback_url`` gets one signed POST of its final
record. This module is what both ends share: which URLs are allowed, and the signature.

Signatures follow Standard Webhooks, the scheme Replicate signs its own webhooks with, keyed with
predq's secret (``PREDQ_CALLBACK_SECRET``, ``whsec_`` + base64): headers ``webhook-id`` (the same
on every retry of a message: dedupe on it), ``webhook-timestamp`` (unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``). A receiver
checks them with ``verify``::

    from producer.callbacks import verify
    record = verify(request.headers, await request.body(), secret="whsec_...")

URLs must be ``http(s)`` and must not reach loopback, private, link-local or other non-public
addresses (a callback could otherwise probe the network the workers run in), unless
``PREDQ_CALLBACK_ALLOW_PRIVATE`` is set: checked at enqueue, and again before each delivery.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from producer.errors import InvalidRequest, PredqError

MAX_URL_CHARS = 2048
TOLERANCE_S = 300


class InvalidSignature(PredqError):
    """A callback's signature or timestamp does not check out: do not trust its body."""


def check_url(url: object) -> str:
    """``url`` if it is an ``http(s)`` URL with a host; raises InvalidRequest (nothing is
    resolved here: see ``check_public``)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise InvalidRequest(
            f"callback_url must be an http(s) URL of at most {MAX_URL_CHARS} chars"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises on a port out of range or not a number
    except ValueError:
        raise InvalidRequest(f"callback_url is not a valid URL: {url[:200]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise InvalidRequest(f"callback_url must be an http(s) URL with a host, got {url[:200]!r}")
    return url


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_public(url: str, *, allow_private: bool) -> None:
    """Raise InvalidRequest when ``url``'s host resolves to a loopback, private, link-local or
    otherwise non-public address (or does not resolve), unless ``allow_private``."""
    if allow_private:
        return
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a label IDNA cannot encode (too long)
        raise InvalidRequest(f"callback_url's host {host[:100]!r} does not resolve") from None
    blocked = sorted({str(info[4][0]) for info in infos if _private(str(info[4][0]))})
    if blocked:
        raise InvalidRequest(
            f"callback_url's host {host!r} resolves to a non-public address ({blocked[0]}); "
            "set PREDQ_CALLBACK_ALLOW_PRIVATE=1 to allow it"
        )


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, message_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` header for one message."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, body: bytes, now_s: int | None = None) -> dict[str, str]:
    """The headers of one delivery attempt (the timestamp is the attempt's)."""
    timestamp = int(time.time()) if now_s is None else now_s
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    received: Mapping[str, str], body: bytes, *, secret: str, tolerance_s: int = TOLERANCE_S
) -> dict[str, Any]:
    """The callback's JSON body (a final JobRecord) if its signature is predq's and its
    timestamp within ``tolerance_s`` of now; raises InvalidSignature otherwise."""
    lower = {name.lower(): value for name, value in received.items()}
    message_id = lower.get("webhook-id", "")
    timestamp = lower.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit():
        raise InvalidSignature("missing webhook-id or webhook-timestamp")
    if abs(time.time() - int(timestamp)) > tolerance_s:
        raise InvalidSignature("webhook-timestamp is too far from now (a replay?)")
    expected = sign(secret, message_id, int(timestamp), body).removeprefix("v1,")
    given = [part.removeprefix("v1,") for part in lower.get("webhook-signature", "").split()]
    if not any(hmac.compare_digest(expected, signature) for signature in given):
        raise InvalidSignature("webhook-signature does not match")
    decoded: dict[str, Any] = json.loads(body)
    return decoded
