"""API keys with two roles: ``read`` (look) and ``full`` (also enqueue, cancel, retry).

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (or, for the dashboard,
its session cookie). Every configured key is compared with ``hmac.compare_digest``, all of them
every time, so neither the answer nor its timing says how much of a key was right. Keys never
reach a log line: they are not in the URL, and the access log is off.
"""

from __future__ import annotations

import hmac
from enum import StrEnum

from fastapi import Request

from api.config import ApiConfig
from api.problems import Problem


class Role(StrEnum):
    READ = "read"
    FULL = "full"


def role_of(key: str | None, config: ApiConfig) -> Role | None:
    """The role ``key`` grants, or None."""
    if not key:
        return None
    given = key.encode()
    found: Role | None = None
    for role, keys in ((Role.FULL, config.api_keys), (Role.READ, config.read_keys)):
        for known in keys:
            if hmac.compare_digest(given, known.get_secret_value().encode()) and found is None:
                found = role
    return found


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return request.headers.get("x-api-key") or None


def require(request: Request, needed: Role) -> Role:
    """The caller's role; raises a 401 problem without a valid key, 403 for a read key that
    tries to act."""
    config: ApiConfig = request.app.state.config
    role = getattr(request.state, "role", None) or role_of(presented_key(request), config)
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
