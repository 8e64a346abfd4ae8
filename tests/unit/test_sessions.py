"""Dashboard sessions: a cookie that names no key, dies with its key or its time, and cannot be
altered; and the CSRF token that goes with it."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from api import sessions

KEY = SecretStr("a-full-access-key-0123456789")
OTHER = SecretStr("another-key-of-this-server-0000")


def test_a_session_opens_with_its_key_and_names_no_secret() -> None:
    value = sessions.issue(KEY)
    assert KEY.get_secret_value() not in value
    session = sessions.open_session(value, [OTHER, KEY])
    assert session is not None
    assert session.key is KEY
    assert sessions.csrf_ok(session, session.csrf_token)
    assert not sessions.csrf_ok(session, None)
    assert not sessions.csrf_ok(session, session.csrf_token[:-1] + "x")


def test_a_session_dies_with_its_key() -> None:
    assert sessions.open_session(sessions.issue(KEY), [OTHER]) is None


def test_an_expired_session_is_refused() -> None:
    assert sessions.open_session(sessions.issue(KEY, lifetime_s=-1), [KEY]) is None


@pytest.mark.parametrize("part", [1, 2, 3, 4])
def test_an_altered_session_is_refused(part: int) -> None:
    pieces = sessions.issue(KEY).split(".")
    if part == 2:
        pieces[2] = str(int(time.time()) + 10**6)  # a longer life
    else:
        pieces[part] = pieces[part][:-1] + ("A" if pieces[part][-1] != "A" else "B")
    assert sessions.open_session(".".join(pieces), [KEY]) is None


@pytest.mark.parametrize("value", [None, "", "v1", "v1.a.b.c.d", "x" * 500, "v2.a.1.c.d"])
def test_garbage_is_not_a_session(value: str | None) -> None:
    assert sessions.open_session(value, [KEY]) is None


def test_each_session_has_its_own_csrf_token() -> None:
    first = sessions.open_session(sessions.issue(KEY), [KEY])
    second = sessions.open_session(sessions.issue(KEY), [KEY])
    assert first is not None and second is not None
    assert first.csrf_token != second.csrf_token
