"""API keys with two roles: ``read`` (look) and ``full`` (also enqueue, cancel, retry).

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, or, for the dashboard,
as its session cookie (api/sessions.py: acting on a cookie also needs the session's CSRF token).
Every configured key is compared with ``hmac.compare_digest``, all of them
every time, so neither the answer nor its timing says how much of a key was right. Keys never
reach a log line: they are not in the URL, and the access log is off.
"""

from __future__ import annotations

import hmac
from enum import StrEnum

from fastapi import Request
from pydantic import SecretStr

from api import sessions
from api.config import ApiConfig
from api.problems import Problem

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    READ = "read"
    FULL = "full"


def match(key: str | None, config: ApiConfig) -> tuple[Role, SecretStr] | None:
    """The role ``key`` grants and the configured key it matched, or None."""
    if not key:
        return None
    given = key.encode()
    found: tuple[Role, SecretStr] | None = None
    for role, keys in ((Role.FULL, config.api_keys), (Role.READ, config.read_keys)):
        for known in keys:
            if hmac.compare_digest(given, known.get_secret_value().encode()) and found is None:
                found = (role, known)
    return found


def role_of(key: str | None, config: ApiConfig) -> Role | None:
    """The role ``key`` grants, or None."""
    found = match(key, config)
    return found[0] if found else None


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.headers.get("x-api-key") or None


def all_keys(config: ApiConfig) -> list[SecretStr]:
    return [*config.api_keys, *config.read_keys]


def require(request: Request, needed: Role) -> Role:
    """The caller's role; raises a 401 problem without a valid key or session, 403 for a read
    key that tries to act or a session that acts without its CSRF token."""
    config: ApiConfig = request.app.state.config
    key = presented_key(request)
    if key is not None:
        role = role_of(key, config)
    else:
        session = sessions.open_session(request.cookies.get(sessions.COOKIE), all_keys(config))
        role = role_of(session.key.get_secret_value(), config) if session else None
        acting = request.method not in SAFE_METHODS
        if (
            session
            and acting
            and not sessions.csrf_ok(session, request.headers.get(sessions.CSRF_HEADER))
        ):
            raise Problem(
                403,
                "Forbidden",
                "a signed-in browser must send the X-CSRF-Token of its session to act",
            )
    if role is None:
        raise Problem(
            401,
            "Unauthenticated",
            "send a valid API key: Authorization: Bearer <key> (or X-API-Key)",
            headers={"WWW-Authenticate": 'Bearer realm="predq"'},
        )
    if needed is Role.FULL and role is not Role.FULL:
        raise Problem(403, "Forbidden", "this key may only read; acting needs a full-access key")
    return role


async def reader(request: Request) -> Role:
    """A dependency: any valid key (async: a sync dependency would cost a thread hop)."""
    return require(request, Role.READ)


async def actor(request: Request) -> Role:
    """A dependency: a full-access key."""
    return require(request, Role.FULL)
