"""Standard Webhooks signatures (https://www.standardwebhooks.com/, version 1): pure functions.

A message is signed as ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` under the secret's key, the
secret written ``whsec_<base64 key>``. The ``webhook-signature`` header is a space-separated list, so during a
rotation both the new and the old secret sign and a receiver holding either accepts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import secrets

SECRET_PREFIX = "whsec_"
KEY_BYTES = 32  # the specification allows 24-64 bytes
TOLERANCE_S = 300  # how far a timestamp may be from now when a signature is verified


class SecretError(ValueError):
    """A secret that is not ``whsec_`` followed by the base64 of 24-64 bytes."""


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` + the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


@functools.lru_cache(maxsize=4096)  # a fan-out signs every attempt: each partner's key is decoded once
def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for; `SecretError` for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise SecretError("a webhook secret's key has 24 to 64 bytes")
    return key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,`` signature of a message under `secret`.

    >>> signature("whsec_" + "A" * 32 + "==", "msg_1", 1700000000, b'{"a":1}')[:3]
    'v1,'
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, "sha256")  # the one-shot C path
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(
    secrets_: tuple[str, ...] | list[str], message_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` header: one signature per secret, the current first."""
    return " ".join(signature(s, message_id, timestamp, body) for s in secrets_)


def verify(
    secrets_: tuple[str, ...] | list[str],
    message_id: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether `header` carries a valid ``v1`` signature of the message under one of `secrets_`, with a
    timestamp within `tolerance_s` of `now` (a replayed old callback is refused)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    expected = {signature(s, message_id, ts, body) for s in secrets_}
    given = header.split()
    return any(hmac.compare_digest(e, g) for e in expected for g in given)
