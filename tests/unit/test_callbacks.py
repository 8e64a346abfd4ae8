"""Completion callbacks' shared rules: which URLs are allowed, and the Standard Webhooks
signature (its known-answer vector, and every way a forged or replayed message is refused)."""

from __future__ import annotations

import json
import time

import pytest

from producer.callbacks import (
    InvalidSignature,
    check_public,
    check_url,
    headers,
    new_secret,
    sign,
    verify,
)
from producer.errors import InvalidRequest

SECRET = new_secret()
BODY = json.dumps({"id": "job-1", "state": "succeeded"}).encode()


@pytest.mark.parametrize(
    "url",
    ["", "ftp://example.com/x", "http://", "http://[", "https://example.com:99999/x",
     "https://example.com:x/", "example.com/hook", "http://" + "a" * 3000, 42],
)  # fmt: skip
def test_a_bad_callback_url_is_a_clear_invalid_request(url: object) -> None:
    with pytest.raises(InvalidRequest, match="callback_url"):
        check_url(url)


def test_a_good_callback_url_passes() -> None:
    assert (
        check_url("https://app.example.com/predq/done?x=1")
        == "https://app.example.com/predq/done?x=1"
    )


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "http://localhost:8080/x", "http://10.1.2.3/", "http://192.168.0.5/",
     "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
     "http://0.0.0.0/", "http://224.0.0.1/"],
)  # fmt: skip
async def test_non_public_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidRequest, match="PREDQ_CALLBACK_ALLOW_PRIVATE"):
        await check_public(url, allow_private=False)
    await check_public(url, allow_private=True)


async def test_a_public_address_is_allowed() -> None:
    await check_public("http://93.184.215.14/hook", allow_private=False)


def test_the_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # From the Standard Webhooks specification's test vectors.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_a_signed_message_verifies_and_gives_the_record() -> None:
    assert verify(headers(SECRET, "msg_job-1_0", BODY), BODY, secret=SECRET) == json.loads(BODY)


def test_a_tampered_body_is_refused() -> None:
    sent = headers(SECRET, "msg_job-1_0", BODY)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify(sent, BODY.replace(b"succeeded", b"failed"), secret=SECRET)


def test_another_secret_is_refused() -> None:
    sent = headers(new_secret(), "msg_job-1_0", BODY)
    with pytest.raises(InvalidSignature):
        verify(sent, BODY, secret=SECRET)


def test_a_replay_outside_the_tolerance_is_refused() -> None:
    sent = headers(SECRET, "msg_job-1_0", BODY, now_s=int(time.time()) - 3600)
    with pytest.raises(InvalidSignature, match="too far"):
        verify(sent, BODY, secret=SECRET)


def test_a_changed_id_is_refused_and_missing_headers_are_named() -> None:
    sent = headers(SECRET, "msg_job-1_0", BODY)
    with pytest.raises(InvalidSignature):
        verify({**sent, "webhook-id": "msg_job-2_0"}, BODY, secret=SECRET)
    with pytest.raises(InvalidSignature, match="missing"):
        verify({"webhook-signature": sent["webhook-signature"]}, BODY, secret=SECRET)


def test_any_of_several_signatures_may_match_as_during_a_secret_rotation() -> None:
    sent = headers(SECRET, "msg_job-1_0", BODY)
    rotated = {**sent, "Webhook-Signature": "v1,bm90LWl0 " + sent["webhook-signature"]}
    del rotated["webhook-signature"]
    assert verify(rotated, BODY, secret=SECRET)["id"] == "job-1"
