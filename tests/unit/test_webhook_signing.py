"""Standard Webhooks signatures (channels.webhooks.signing) checked by an independent implementation: the
`standardwebhooks` package, as a partner's receiver would use it."""

from __future__ import annotations

import base64
import doctest
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from channels.webhooks import client, signing
from channels.webhooks.signing import SecretError, new_secret, signature, signature_header, verify

BODY = json.dumps(
    {
        "identifier": "15030041600000_20260709160000",
        "hazard": "heat",
        "level": "orange",
        "headline": "高温橙色预警",
    },
    ensure_ascii=False,
).encode()


def headers(message_id: str, timestamp: int, signatures: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}


def secret_of(n_bytes: int, fill: int = 7) -> str:
    return "whsec_" + base64.b64encode(bytes([fill]) * n_bytes).decode()


def test_the_doctests_of_signing_and_the_client_pass() -> None:
    for module in (signing, client):
        assert doctest.testmod(module).failed == 0


def test_a_published_vector_of_the_specification_is_reproduced() -> None:
    # the example of the Standard Webhooks reference libraries (a 24-byte key)
    got = signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    ("secret", "body"),
    [
        (new_secret(), BODY),
        (secret_of(24), BODY),
        (secret_of(64, fill=200), BODY),
        (new_secret(), b""),
        (new_secret(), "乌海市气象台发布大风蓝色预警。\n".encode()),
        (new_secret(), b"\xff\xfe not even UTF-8"),
    ],
    # named, not numbered by their random secrets: every collection of the suite (each parallel worker's)
    # must give the same test ids
    ids=["new", "24-byte", "64-byte", "empty-body", "chinese-body", "not-utf8-body"],
)
def test_a_signature_verifies_with_the_standardwebhooks_package(secret: str, body: bytes) -> None:
    now = int(time.time())
    header = signature_header((secret,), "msg_41-1-7", now, body)
    Webhook(secret).verify(body, headers("msg_41-1-7", now, header), json_parse=False)
    # and the package's own signature is the same string
    assert header == Webhook(secret).sign("msg_41-1-7", datetime.fromtimestamp(now, UTC), body)


def test_during_a_rotation_a_receiver_holding_either_secret_verifies() -> None:
    new, old, stranger = new_secret(), new_secret(), new_secret()
    now = int(time.time())
    header = signature_header((new, old), "msg_9", now, BODY)
    assert len(header.split(" ")) == 2 and header.split(" ")[0] == signature(new, "msg_9", now, BODY)
    for held in (new, old):
        assert Webhook(held).verify(BODY, headers("msg_9", now, header))["hazard"] == "heat"
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, headers("msg_9", now, header))


def test_a_signature_over_another_id_timestamp_or_body_does_not_verify() -> None:
    secret, now = new_secret(), int(time.time())
    header = signature_header((secret,), "msg_1", now, BODY)
    for message_id, ts, body in (("msg_2", now, BODY), ("msg_1", now + 1, BODY), ("msg_1", now, BODY + b" ")):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, headers(message_id, ts, header))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_",
        "whsec_not base64!",
        secret_of(16),  # too short a key
        secret_of(65),  # too long
        "whsec_" + base64.b64encode(bytes(32)).decode().rstrip("="),  # padding missing
    ],
)
def test_a_bad_secret_raises_secret_error(bad: str) -> None:
    with pytest.raises(SecretError):
        signature(bad, "msg_1", 1, BODY)
    with pytest.raises(SecretError):
        signature_header((new_secret(), bad), "msg_1", 1, BODY)


def test_new_secrets_are_fresh_and_well_formed() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for s in secrets:
        assert s.startswith("whsec_") and len(base64.b64decode(s[6:], validate=True)) == 32


def test_verify_accepts_a_fresh_signature_from_the_package_and_refuses_old_forged_or_garbled_ones() -> None:
    secret, old_secret = new_secret(), new_secret()
    now = int(time.time())
    header = Webhook(secret).sign("msg_5", datetime.fromtimestamp(now, UTC), BODY)
    assert verify((secret,), "msg_5", str(now), BODY, header, now=now)
    assert verify((old_secret, secret), "msg_5", str(now), BODY, f"v1,AAAA {header}", now=now + 299)
    # a replay of an old callback, or one from too far in the future
    assert not verify((secret,), "msg_5", str(now), BODY, header, now=now + 301)
    assert not verify((secret,), "msg_5", str(now), BODY, header, now=now - 301)
    # a forged body, id or timestamp under a signature that was real
    assert not verify((secret,), "msg_5", str(now), BODY.replace(b"orange", b"red"), header, now=now)
    assert not verify((secret,), "msg_6", str(now), BODY, header, now=now)
    old = now - 3600
    old_header = signature((secret,)[0], "msg_5", old, BODY)
    assert not verify((secret,), "msg_5", str(old), BODY, old_header, now=now)
    # garbled headers
    assert not verify((secret,), "msg_5", "soon", BODY, header, now=now)
    assert not verify((secret,), "msg_5", str(now), BODY, "", now=now)
    assert not verify((old_secret,), "msg_5", str(now), BODY, header, now=now)
