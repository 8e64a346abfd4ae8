"""Dashboard sessions: an API key traded once for a signed cookie, and the CSRF token that goes
with it.

The cookie holds no key and nothing to look up: ``v1.<kid>.<expires>.<nonce>.<signature>``, where
``kid`` names the key it was made from (the first 16 hex digits of its SHA-256) and the signature
is an HMAC keyed with a secret derived from that key. So a session dies when its key is removed
from the configuration, its role is the key's role at each request (a key moved to the read
list reads from then on), and several ``predq serve`` processes with the same keys accept each
other's sessions without sharing state. It is ``HttpOnly`` (scripts cannot read it),
``SameSite=Strict`` (other sites' pages cannot send it) and ``Secure`` over HTTPS.

Requests that act (POST) on the strength of the cookie must also carry ``X-CSRF-Token``: an HMAC
of the session's nonce, which the dashboard reads from ``GET /session`` (a same-origin read that
another site cannot make). Requests with an API key in a header need no token: a browser never
adds that header by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from pydantic import SecretStr

COOKIE = "predq_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME_S = 12 * 3600
_VERSION = "v1"


@dataclass(frozen=True)
class Session:
    """A valid session: the key it was made from, and its CSRF token."""

    key: SecretStr
    csrf_token: str
    expires_at: int


def _kid(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _mac(key: str, message: str) -> str:
    secret = hashlib.sha256(b"predq-session\x00" + key.encode()).digest()
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(key: SecretStr, *, lifetime_s: int = LIFETIME_S) -> str:
    """A new session cookie's value for ``key`` (which the caller has checked)."""
    plain = key.get_secret_value()
    body = f"{_VERSION}.{_kid(plain)}.{int(time.time()) + lifetime_s}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_mac(plain, body)}"


def open_session(value: str | None, keys: list[SecretStr]) -> Session | None:
    """The session ``value`` stands for if it is genuine, unexpired and its key still
    configured; else None."""
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != _VERSION or not parts[2].isdigit():
        return None
    _, kid, expires, nonce, signature = parts
    if int(expires) < time.time():
        return None
    body = value.rsplit(".", 1)[0]
    found: Session | None = None
    for key in keys:  # every key, every time: the timing says nothing about which matched
        plain = key.get_secret_value()
        genuine = hmac.compare_digest(_kid(plain), kid) and hmac.compare_digest(
            _mac(plain, body), signature
        )
        if genuine and found is None:
            found = Session(key, _mac(plain, f"csrf.{nonce}"), int(expires))
    return found


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf_token, presented)
